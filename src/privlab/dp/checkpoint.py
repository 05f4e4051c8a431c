"""Checkpoints of private training: weights (safetensors), privacy ledger (checksummed JSON), config (JSON).

A checkpoint directory holds ``model.safetensors``, ``ledger.json`` (a
:class:`~privlab.accounting.PrivacyLedger`, refused on load if its checksum or epsilon does not check
out) and ``config.json`` (what produced the model, with SHA-256s of the weights file and of the
ledger file, and the ledger's steps, delta and epsilon, so a ledger cannot silently be paired with
other weights: an older checkpoint's ledger copied in is refused). No pickle anywhere.

The checksums guard against accidents (a file copied from another run, truncated or edited by
mistake), not against tampering: anyone who can write the directory can recompute them.
Checkpoints of schema version 1 (no ledger checksum) still load if the ledger's steps and delta
match those in their config.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from privlab.accounting import PrivacyLedger
from privlab.accounting.fixed_size import FIXED_SIZE_SCHEMA, FixedSizeLedger
from privlab.dp.distributed import bare
from privlab.errors import CorruptArtifactError

CHECKPOINT_SCHEMA_VERSION = 2
_READABLE_VERSIONS = (1, 2)
MODEL_FILE, LEDGER_FILE, CONFIG_FILE = "model.safetensors", "ledger.json", "config.json"


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the ledger, the config and the state dict that was loaded."""

    ledger: PrivacyLedger | FixedSizeLedger
    config: dict[str, Any]
    path: Path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_checkpoint(
    directory: str | Path,
    model: nn.Module,
    ledger: PrivacyLedger | FixedSizeLedger,
    config: dict[str, Any] | None = None,
) -> Path:
    """Write weights, ledger and config to ``directory`` (created if needed); return the directory.

    A ``DistributedDataParallel`` model is saved as its module (the same keys as the bare model).
    """
    model = bare(model)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}  # tied weights -> copies
    save_file(state, str(out / MODEL_FILE))
    ledger.to_json(out / LEDGER_FILE)
    meta = {
        "schema_version": CHECKPOINT_SCHEMA_VERSION,
        "model_sha256": _sha256(out / MODEL_FILE),
        "ledger_sha256": _sha256(out / LEDGER_FILE),
        "epsilon": ledger.epsilon(),
        "delta": ledger.delta,
        "steps": ledger.steps,
        "config": config or {},
    }
    (out / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
    return out


def load_checkpoint(directory: str | Path, model: nn.Module) -> Checkpoint:
    """Load weights into ``model`` (strict; a DDP model's module) and return the verified ledger and config."""
    model = bare(model)
    d = Path(directory)
    try:
        meta = json.loads((d / CONFIG_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CorruptArtifactError(f"Unreadable checkpoint config in {d}: {exc}") from exc
    if meta.get("schema_version") not in _READABLE_VERSIONS:
        raise CorruptArtifactError(f"Unsupported checkpoint schema_version {meta.get('schema_version')!r}.")
    for name in (MODEL_FILE, LEDGER_FILE):
        if not (d / name).is_file():
            raise CorruptArtifactError(f"The checkpoint in {d} has no {name}: it is incomplete.")
    if meta.get("model_sha256") != _sha256(d / MODEL_FILE):
        raise CorruptArtifactError(f"{d / MODEL_FILE} does not match the checksum recorded in {CONFIG_FILE}.")
    if meta["schema_version"] >= 2 and meta.get("ledger_sha256") != _sha256(d / LEDGER_FILE):
        raise CorruptArtifactError(
            f"{d / LEDGER_FILE} does not match the checksum recorded in {CONFIG_FILE}: the ledger is not the one "
            "saved with these weights."
        )
    ledger_text = (d / LEDGER_FILE).read_text()
    ledger: PrivacyLedger | FixedSizeLedger
    if f'"{FIXED_SIZE_SCHEMA}"' in ledger_text:
        ledger = FixedSizeLedger.from_json(ledger_text)
    else:
        ledger = PrivacyLedger.from_json(ledger_text)
    if meta.get("steps") != ledger.steps or meta.get("delta") != ledger.delta:
        raise CorruptArtifactError(
            f"{d / LEDGER_FILE} records {ledger.steps} steps at delta={ledger.delta}, but {CONFIG_FILE} says "
            f"{meta.get('steps')} steps at delta={meta.get('delta')}: the ledger is not the one saved with these "
            "weights."
        )
    model.load_state_dict(load_file(str(d / MODEL_FILE)))
    return Checkpoint(ledger, dict(meta.get("config", {})), d)
