"""The live fleet page: `GET /ui`, one HTML file, a style sheet and a small script, served from the
package (no CDN, no build step). The page itself is open; the data it shows comes from the JSON
routes, with the token the user types in (kept in the browser tab only). Not an API route: it is
left out of the OpenAPI document."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from starlette.responses import Response

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
# Only this gateway's own files and routes; no inline script, no framing.
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


def _served(name: str, media_type: str) -> Response:
    return Response((UI_DIR / name).read_bytes(), media_type=media_type, headers=_HEADERS)


@router.get("/ui")
def page() -> Response:
    return _served("index.html", "text/html")


@router.get("/ui/fleet.js")
def script() -> Response:
    return _served("fleet.js", "text/javascript")


@router.get("/ui/fleet.css")
def style() -> Response:
    return _served("fleet.css", "text/css")
