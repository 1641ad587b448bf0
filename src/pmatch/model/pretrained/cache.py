"""Where converted pretrained weights are cached between runs."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The pmatch cache folder, created on first use.

    $PMATCH_CACHE_DIR wins; otherwise $XDG_CACHE_HOME/pmatch; otherwise ~/.cache/pmatch.
    The environment is read on each call (never at import) so tests and jobs can point it
    elsewhere.
    """
    configured = os.environ.get("PMATCH_CACHE_DIR")
    if configured:
        folder = Path(configured).expanduser()
    else:
        xdg_cache = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg_cache).expanduser() if xdg_cache else Path.home() / ".cache"
        folder = base / "pmatch"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
