"""SISA training and exact unlearning (Bourtoule et al. 2021, "Machine Unlearning", IEEE S&P).

Sharded, Isolated, Sliced, Aggregated: the training set is cut (seeded) into ``shards`` disjoint
shards, each shard into ``slices`` slices. Shard ``s`` trains its own model in stages: stage ``r``
continues from the stage ``r - 1`` checkpoint on slices ``0..r`` of the shard for
``train.epochs / slices`` epochs (seed ``stage_seed(s, r)``), and every stage's parameters are
saved as a safetensors checkpoint. Prediction aggregates the shard models by averaging their
softmax outputs (:class:`SISAEnsemble` returns the log of the mean probabilities).

Removing rows retrains only the shards that hold them, from the checkpoint just before the
earliest affected slice, with the same seeds: the result is exactly the model those shards
would have had if the rows had never been there. New checkpoints go to a new generation
directory and ``manifest.json`` is switched atomically at the end (``os.replace``), so a removal
that is interrupted leaves the previous checkpoints and manifest in force.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import weakref
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from privlab.data import ArrayDataset
from privlab.errors import CorruptArtifactError, InvalidParameterError
from privlab.train import num_steps, train_model
from privlab.unlearn._steps import sub_seed
from privlab.unlearn.base import UnlearnConfig, UnlearnResult, match_rows, register, reinit

SCHEMA = "privlab.unlearn.sisa"
VERSION = 1
STATE_ATTR = "privlab_sisa"


class SISAEnsemble(nn.Module):
    """Shard models aggregated by mean probability: ``forward(x) = log mean_s softmax(f_s(x))``."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logp = torch.stack([torch.log_softmax(m(x), dim=1) for m in self.members])  # (S, B, C)
        return torch.logsumexp(logp, dim=0) - float(np.log(len(self.members)))


@dataclass(frozen=True, eq=False)
class SISAState:
    """Where the checkpoints live, the manifest in force, and the training data rows index into."""

    directory: Path
    manifest: dict[str, Any]
    data: ArrayDataset
    template: nn.Module
    cleanup: weakref.finalize | None = None  # removes a temporary checkpoint directory with its last owner


def stage_seed(seed: int, shard: int, slc: int) -> int:
    """Seed of stage ``slc`` of shard ``shard`` (its batches; stage 0's also seeds the initialisation)."""
    return sub_seed(seed, 1000 + shard * 1000 + slc)


def data_digest(data: ArrayDataset) -> str:
    h = hashlib.sha256(data.x.contiguous().numpy().tobytes())
    h.update(data.y.contiguous().numpy().tobytes())
    return h.hexdigest()[:32]


def _stage_cfg(config: UnlearnConfig, shard: int, slc: int) -> Any:
    return replace(
        config.train, epochs=config.train.epochs / config.slices, seed=stage_seed(config.train.seed, shard, slc)
    )


def _stage_rows(manifest: dict[str, Any], shard: int, slc: int) -> list[int]:
    """Rows of slices 0..slc of ``shard`` still present (in slice order)."""
    gone = set(manifest["removed"])
    return [i for r in range(slc + 1) for i in manifest["slice_rows"][shard][r] if i not in gone]


def _train_shard(
    template: nn.Module,
    data: ArrayDataset,
    manifest: dict[str, Any],
    config: UnlearnConfig,
    shard: int,
    start: int,
    gen_dir: Path,
    root: Path,
) -> tuple[nn.Module, int]:
    """Train stages ``start..slices-1`` of ``shard``; write their checkpoints; return the model and examples seen."""
    seed = config.train.seed
    if start == 0:
        m = reinit(template, stage_seed(seed, shard, 0), strict=False)  # template never trained
    else:
        m = reinit(template, 0, strict=False)
        m.load_state_dict(load_file(str(root / manifest["checkpoints"][shard][start - 1])))
    seen = 0
    for r in range(start, config.slices):
        rows = _stage_rows(manifest, shard, r)
        cfg = _stage_cfg(config, shard, r)
        if rows:
            train_model(m, data.subset(torch.as_tensor(rows)), cfg)
            seen += num_steps(len(rows), cfg.epochs, cfg.batch_size) * cfg.batch_size
        path = gen_dir / f"shard{shard}-slice{r}.safetensors"
        save_file({k: v.detach().contiguous().clone() for k, v in m.state_dict().items()}, str(path))
        manifest["checkpoints"][shard][r] = str(path.relative_to(root))
    return m.eval(), seen


def _write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    tmp = root / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, root / "manifest.json")  # the switch-over: atomic on POSIX


def _ensemble(
    root: Path, manifest: dict[str, Any], data: ArrayDataset, template: nn.Module, temp: bool
) -> SISAEnsemble:
    members = []
    for s in range(manifest["shards"]):
        m = reinit(template, 0, strict=False)
        m.load_state_dict(load_file(str(root / manifest["checkpoints"][s][-1])))
        members.append(m.eval())
    ens = SISAEnsemble(members).eval()
    cleanup = weakref.finalize(ens, shutil.rmtree, str(root), True) if temp else None
    setattr(ens, STATE_ATTR, SISAState(root, manifest, data, template, cleanup))
    return ens


def train_sisa(model: nn.Module, data: ArrayDataset, config: UnlearnConfig) -> SISAEnsemble:
    """Train a SISA ensemble of ``config.shards`` copies of ``model``'s architecture on ``data``.

    Checkpoints go to ``config.checkpoint_dir`` (which must not already hold a SISA manifest; use
    :func:`load_sisa` to reopen one) or, if empty, to a temporary directory removed with the model.
    """
    S, R = config.shards, config.slices
    if len(data) < S * R:
        raise InvalidParameterError(
            f"The 'shards' parameter of SISA times 'slices' must be at most the number of training rows ({len(data)}). "
            f"Got {S} x {R} instead."
        )
    temp = not config.checkpoint_dir
    root = Path(tempfile.mkdtemp(prefix="privlab-sisa-")) if temp else Path(config.checkpoint_dir)
    if (root / "manifest.json").exists():
        raise InvalidParameterError(
            f"The 'checkpoint_dir' parameter of SISA must be a new directory. Got {str(root)!r}, which already holds "
            "a SISA manifest (open it with privlab.unlearn.sisa.load_sisa) instead."
        )
    gen_dir = root / "gen-0000"
    gen_dir.mkdir(parents=True, exist_ok=True)
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(sub_seed(config.train.seed, 5))).tolist()
    shards = [perm[s::S] for s in range(S)]
    manifest: dict[str, Any] = {
        "schema": SCHEMA,
        "version": VERSION,
        "generation": 0,
        "shards": S,
        "slices": R,
        "n_train": len(data),
        "data_digest": data_digest(data),
        "train": config.train.to_dict(),
        "slice_rows": [[sh[r::R] for r in range(R)] for sh in shards],
        "checkpoints": [[""] * R for _ in range(S)],
        "removed": [],
    }
    for s in tqdm(range(S), disable=not config.progress, desc="sisa shards", leave=False):
        _train_shard(model, data, manifest, config, s, 0, gen_dir, root)
    _write_manifest(root, manifest)
    return _ensemble(root, manifest, data, model, temp)


def load_sisa(directory: str | os.PathLike[str], model: nn.Module, data: ArrayDataset) -> SISAEnsemble:
    """Reopen the SISA ensemble whose manifest is in ``directory`` (``model``: the shard architecture,
    ``data``: the original training set, checked against the manifest's digest)."""
    root = Path(directory)
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CorruptArtifactError(f"SISA manifest {root / 'manifest.json'} is unreadable: {exc}") from exc
    if manifest.get("schema") != SCHEMA or manifest.get("data_digest") != data_digest(data):
        raise CorruptArtifactError(
            f"{root / 'manifest.json'} is not a SISA manifest for this training set (schema or data digest differ)."
        )
    return _ensemble(root, manifest, data, model, temp=False)


def sisa_state(model: nn.Module) -> SISAState:
    st = getattr(model, STATE_ATTR, None)
    if not isinstance(st, SISAState):
        raise InvalidParameterError(
            "The 'model' parameter of SISA unlearning must be a SISAEnsemble from privlab.unlearn.sisa.train_sisa "
            f"(or load_sisa): only its shard/slice checkpoints can be retrained. Got {type(model).__name__} instead."
        )
    return st


def _train_for(model: nn.Module, data: ArrayDataset, config: UnlearnConfig) -> nn.Module:
    return train_sisa(model, data, config)


@register("sisa", "exact", "SISA (Bourtoule et al. 2021)", train=_train_for)
def unlearn_sisa(model: nn.Module, forget: ArrayDataset, retain: ArrayDataset, config: UnlearnConfig) -> UnlearnResult:
    st = sisa_state(model)
    old = st.manifest
    try:
        on_disk = json.loads((st.directory / "manifest.json").read_text()).get("generation")
    except (OSError, json.JSONDecodeError) as exc:
        raise CorruptArtifactError(f"SISA manifest in {st.directory} is unreadable: {exc}") from exc
    if on_disk != old["generation"]:
        raise InvalidParameterError(
            f"The 'model' parameter of SISA unlearning is stale: its checkpoints have moved on to generation "
            f"{on_disk} (it holds generation {old['generation']}). Use the ensemble the last removal returned, or "
            "load_sisa."
        )
    gone = set(old["removed"])
    present = [i for i in range(old["n_train"]) if i not in gone]
    if len(forget) + len(retain) != len(present):
        raise InvalidParameterError(
            f"The 'retain' parameter of SISA unlearning plus 'forget' must be the ensemble's current training set "
            f"({len(present)} rows). Got {len(forget)} + {len(retain)} rows instead."
        )
    pos = match_rows(forget, st.data.subset(torch.as_tensor(present)), owner="SISA unlearning")
    rows = {present[p] for p in pos}
    where = {i: (s, r) for s in range(old["shards"]) for r in range(old["slices"]) for i in old["slice_rows"][s][r]}
    first: dict[int, int] = {}
    for i in rows:
        s, r = where[i]
        first[s] = min(first.get(s, r), r)
    manifest = json.loads(json.dumps(old))
    manifest["removed"] = sorted(gone | rows)
    manifest["generation"] = old["generation"] + 1
    gen_dir = st.directory / f"gen-{manifest['generation']:04d}"
    if gen_dir.exists():
        shutil.rmtree(gen_dir)  # left by an interrupted removal; never referenced by the manifest in force
    gen_dir.mkdir(parents=True)
    cfg = replace(config, shards=old["shards"], slices=old["slices"], train=type(config.train).from_dict(old["train"]))
    seen = 0
    for s in tqdm(sorted(first), disable=not config.progress, desc="sisa retrain", leave=False):
        _, n = _train_shard(st.template, st.data, manifest, cfg, s, first[s], gen_dir, st.directory)
        seen += n
    _write_manifest(st.directory, manifest)
    # checkpoints no longer referenced (superseded generations) can go once the new manifest is in force
    used = {c for sh in manifest["checkpoints"] for c in sh}
    for p in st.directory.glob("gen-*/*.safetensors"):
        if str(p.relative_to(st.directory)) not in used:
            p.unlink()
    temp = st.cleanup is not None and st.cleanup.detach() is not None  # the directory moves to the new ensemble
    ens = _ensemble(st.directory, manifest, st.data, st.template, temp)
    full = sum(
        num_steps(len(_stage_rows(manifest, s, r)), cfg.train.epochs / cfg.slices, cfg.train.batch_size)
        * cfg.train.batch_size
        for s in range(cfg.shards)
        for r in range(cfg.slices)
        if _stage_rows(manifest, s, r)
    )
    details = {
        "shards_retrained": sorted(first),
        "first_slice": {str(s): r for s, r in first.items()},
        "generation": manifest["generation"],
        "checkpoint_dir": str(st.directory),
    }
    steps = seen // max(cfg.train.batch_size, 1)
    return UnlearnResult(ens, "sisa", 0.0, steps, seen, seen / max(full, 1), details)
