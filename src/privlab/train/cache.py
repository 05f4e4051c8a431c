"""On-disk cache of trained ensembles: safetensors weights + JSON metadata, one pair per chunk.

Layout under ``cache_dir/ensemble-<key>/``::

    ensemble.json                    schema, version, config, config hash, packed membership mask
    chunk-<start>-<stop>.safetensors stacked state (stop - start, ...) of models start..stop-1
    chunk-<start>-<stop>.json        written last: its presence marks the chunk complete

``key`` hashes everything that changes the trained weights (config, mask, data, architecture), so
a re-run reuses the models and a killed run resumes at the first missing chunk. Files are written
to a temporary name and renamed, so a crash never leaves a half-written chunk that looks complete.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from privlab.errors import CorruptArtifactError

SCHEMA = "privlab.train.ensemble"
VERSION = 1


def mask_to_json(mask: np.ndarray) -> dict[str, Any]:
    """A (K, N) bool mask as ``{"shape": [K, N], "packbits_b64": ...}``."""
    packed = np.packbits(mask.astype(bool), axis=None)
    return {"shape": list(mask.shape), "packbits_b64": base64.b64encode(packed.tobytes()).decode()}


def mask_from_json(data: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`mask_to_json`."""
    shape = tuple(int(s) for s in data["shape"])
    bits = np.unpackbits(np.frombuffer(base64.b64decode(data["packbits_b64"]), dtype=np.uint8))
    return bits[: int(np.prod(shape))].reshape(shape).astype(bool)


def digest(*parts: bytes | str) -> str:
    """First 16 hex digits of SHA-256 over ``parts``."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\x00")
    return h.hexdigest()[:16]


def _write_atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


class EnsembleCache:
    """Reads and writes the chunks of one ensemble (identified by ``key``) under ``root``."""

    def __init__(self, root: str | os.PathLike[str], key: str, meta: dict[str, Any]) -> None:
        self.dir = Path(root) / f"ensemble-{key}"
        self.key = key
        self.dir.mkdir(parents=True, exist_ok=True)
        head = self.dir / "ensemble.json"
        record = {"schema": SCHEMA, "version": VERSION, "key": key, **meta}
        if head.exists():
            self._check(self._read_json(head), head)
        else:
            _write_atomic(head, lambda p: p.write_text(json.dumps(record, indent=1)))

    def _read_json(self, path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CorruptArtifactError(f"Ensemble cache file {path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise CorruptArtifactError(f"Ensemble cache file {path} must hold a JSON object.")
        return data

    def _check(self, data: dict[str, Any], path: Path) -> None:
        if data.get("schema") != SCHEMA or data.get("version") != VERSION or data.get("key") != self.key:
            raise CorruptArtifactError(
                f"Ensemble cache file {path} has schema={data.get('schema')!r}, version={data.get('version')!r}, "
                f"key={data.get('key')!r}; expected {SCHEMA!r}, {VERSION}, {self.key!r}. Delete the folder to retrain."
            )

    def _paths(self, start: int, stop: int) -> tuple[Path, Path]:
        stem = f"chunk-{start:06d}-{stop:06d}"
        return self.dir / f"{stem}.safetensors", self.dir / f"{stem}.json"

    def load(self, start: int, stop: int) -> dict[str, torch.Tensor] | None:
        """The stacked state of models ``start..stop-1``, or None if that chunk is not complete."""
        weights, meta = self._paths(start, stop)
        if not meta.exists():
            return None
        data = self._read_json(meta)
        self._check(data, meta)
        if data.get("start") != start or data.get("stop") != stop:
            raise CorruptArtifactError(
                f"Ensemble cache file {meta} describes models {data.get('start')}..{data.get('stop')}."
            )
        try:
            state = load_file(str(weights))
        except Exception as exc:  # safetensors raises several types on truncated/corrupt files
            raise CorruptArtifactError(f"Ensemble cache file {weights} cannot be read: {exc}") from exc
        if any(v.shape[0] != stop - start for v in state.values()):
            raise CorruptArtifactError(f"Ensemble cache file {weights} does not hold {stop - start} models.")
        return state

    def save(self, start: int, stop: int, state: dict[str, torch.Tensor], extra: dict[str, Any]) -> None:
        """Write a completed chunk (weights first, then the JSON that marks it complete)."""
        weights, meta = self._paths(start, stop)
        tensors = {k: v.detach().contiguous() for k, v in state.items()}
        _write_atomic(weights, lambda p: save_file(tensors, str(p)))
        record = {"schema": SCHEMA, "version": VERSION, "key": self.key, "start": start, "stop": stop, **extra}
        _write_atomic(meta, lambda p: p.write_text(json.dumps(record, indent=1)))
