"""Plain-JSON conversion shared by every artifact privlab writes (ledgers, audits, reports)."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from privlab.errors import CorruptArtifactError


def jsonable(value: Any, default: Callable[[Any], Any] | None = None) -> Any:
    """``value`` as plain JSON types: mappings and sequences recursively, numpy/torch scalars and
    arrays via ``tolist()``, and non-finite floats as the strings "inf", "-inf", "nan". Any other
    value is returned as is, or as ``default(value)`` when ``default`` is given."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, default) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v, default) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):  # numpy / torch
        return jsonable(value.tolist(), default)
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value if default is None else default(value)


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no whitespace, non-finite floats as strings): what checksums hash."""
    return json.dumps(jsonable(obj), sort_keys=True, separators=(",", ":"))


def sha256_of(obj: Any) -> str:
    """SHA-256 (hex) of :func:`canonical_json` of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def seal(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` plus ``"sha256"``: the checksum of everything else (tamper evidence)."""
    return {**body, "sha256": sha256_of(body)}


def check_sealed(data: Any, *, schema: str, versions: Iterable[int], what: str) -> dict[str, Any]:
    """Verify a sealed document's ``schema``, ``schema_version`` (one of ``versions``) and ``sha256``.

    The one check behind every versioned, checksummed artifact (ledgers, reports). ``what`` names
    the document in the messages (e.g. a path). Returns ``data``; raises :class:`CorruptArtifactError`.
    """
    readable = list(versions)
    if not isinstance(data, dict) or data.get("schema") != schema:
        raise CorruptArtifactError(f"{what} is not a privlab document of schema {schema!r}.")
    if data.get("schema_version") not in readable:
        raise CorruptArtifactError(
            f"{what} has schema_version {data.get('schema_version')!r}; this privlab reads "
            f"{', '.join(map(str, readable))}."
        )
    body = {k: v for k, v in data.items() if k != "sha256"}
    if data.get("sha256") != sha256_of(body):
        raise CorruptArtifactError(f"{what}: checksum mismatch, the file was modified or corrupted.")
    return data
