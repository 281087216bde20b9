"""How one service names another in its settings: an http(s) URL, kept without a trailing slash so
that paths join onto it as written."""

from __future__ import annotations


def check_http_url(value: str) -> str:
    """A settings validator: refuse anything but http(s) at start-up."""
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value.rstrip("/")
