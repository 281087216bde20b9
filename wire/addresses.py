"""How one service names another in its settings: an http(s) URL, kept without a trailing slash so
that paths join onto it as written."""

from __future__ import annotations


def check_http_url(value: str) -> str:
    """A settings validator: refuse anything but http(s) at start-up."""
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value.rstrip("/")


def split_name_and_port(value: str) -> tuple[str, int]:
    """`name:port` (a DNS name whose records are services, and their port) as its two parts;
    ValueError when it is not that."""
    name, separator, port = value.rpartition(":")
    if not separator or not name or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected name:port (for example tasks.modelhost:8101), got {value!r}")
    return name, int(port)


def check_name_and_port(value: str | None) -> str | None:
    """A settings validator for `name:port`."""
    if value:
        split_name_and_port(value)
    return value or None
