"""Opening run pages in Debian's headless Chromium (screenshots, the browser test)."""

from __future__ import annotations

import os
import shutil

# What this kind of machine needs: no sandbox as root, no GPU, and no background connections or
# QUIC (a closed network refuses them, many at a time).
CHROMIUM_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def find_chromium() -> str | None:
    """``$PROMPTOPT_CHROMIUM``, or the ``chromium`` on PATH."""
    return (
        os.environ.get("PROMPTOPT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
