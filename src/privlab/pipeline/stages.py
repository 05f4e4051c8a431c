"""The pipeline's stages, each a function of (config, inputs) -> cached outputs.

data -> targets (DP or not) -> reference models -> signals + attacks -> audits -> report.
Every stage that costs more than a second is cached with :mod:`privlab.pipeline.cache`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader

from privlab.accounting import PrivacyLedger
from privlab.audit.spec import AuditSpec
from privlab.data import ArrayDataset, load_dataset, membership_mask
from privlab.dp import make_private
from privlab.errors import CorruptArtifactError, InvalidParameterError
from privlab.models import MLP, SmallCNN
from privlab.pipeline.cache import stage
from privlab.pipeline.config import DataConfig, RunConfig, TargetConfig, TrainSpec
from privlab.train import TrainConfig, accuracy, fit, train_ensemble


@dataclass(frozen=True, eq=False)
class Population:
    """The examples membership is decided over, the held-out test set and the K+1 membership rows
    (row 0: the targets' training set; rows 1..K: the reference models')."""

    data: ArrayDataset
    test: ArrayDataset
    mask: np.ndarray

    @property
    def members(self) -> ArrayDataset:
        return self.data.subset(torch.from_numpy(self.mask[0]))


def load_population(cfg: RunConfig) -> Population:
    """Draw ``population`` examples of the train split (seeded) and the test set; build the masks."""
    d: DataConfig = cfg.data
    train = load_dataset(d.dataset, "train")
    test = load_dataset(d.dataset, "test")
    g = torch.Generator().manual_seed(cfg.seed)
    idx = torch.randperm(len(train), generator=g)[: min(d.population, len(train))]
    data = train.subset(idx)
    mask = membership_mask(cfg.attack.reference_models + 1, len(data), seed=cfg.seed)
    return Population(data, test.head(min(d.test_size, len(test))), mask)


def build(t: TargetConfig, data: ArrayDataset) -> nn.Module:
    """A fresh model of target ``t``'s architecture sized for ``data``."""
    classes = data.num_classes
    if t.model == "cnn":
        return SmallCNN(in_channels=int(data.x.shape[1]), num_classes=classes)
    return MLP(in_features=int(np.prod(data.x.shape[1:])), hidden=t.hidden, num_classes=classes)


def _optimizer(model: nn.Module, spec: TrainSpec) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if spec.optimizer == "adam":
        return torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)
    return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)


@dataclass(frozen=True, eq=False)
class TrainedTarget:
    name: str
    model: nn.Module
    utility: dict[str, float]
    ledger: PrivacyLedger | None
    noise_multiplier: float | None
    sample_rate: float | None
    steps: int | None
    secure_rng: bool = False  # a DP target's sampling and noise came from the OS CSPRNG (else seeded)


def train_target(cfg: RunConfig, t: TargetConfig, pop: Population, run_dir: Path, progress: bool) -> TrainedTarget:
    """Train (or load from cache) one target on the population's row-0 members."""
    deps = {
        "data": asdict(cfg.data),
        "seed": cfg.seed,
        "n_ref": cfg.attack.reference_models,
        "target": {
            "model": t.model,
            "hidden": list(t.hidden),
            "train": asdict(t.train),
            "dp": asdict(t.dp) if t.dp else None,
        },
    }
    st = stage(run_dir, f"target-{t.name}", deps)
    model = build(t, pop.data)
    if st.done:
        meta = st.read_json("meta.json")
        try:
            model.load_state_dict(load_file(str(st.path / "model.safetensors")))
        except Exception as exc:
            raise CorruptArtifactError(f"cached model {st.path / 'model.safetensors'} is unreadable: {exc}") from exc
        ledger = PrivacyLedger.from_json(st.path / "ledger.json") if (st.path / "ledger.json").exists() else None
        model.eval()
        return TrainedTarget(
            t.name,
            model,
            meta["utility"],
            ledger,
            meta.get("noise_multiplier"),
            meta.get("sample_rate"),
            meta.get("steps"),
            bool(meta.get("secure_rng", False)),
        )
    st.begin()
    torch.manual_seed(cfg.seed)
    model = build(t, pop.data)
    members = pop.members
    opt = _optimizer(model, t.train)
    loader = DataLoader(
        members, batch_size=t.train.batch_size, shuffle=True, generator=torch.Generator().manual_seed(cfg.seed)
    )
    ledger = None
    noise_multiplier = q = steps = None
    n_steps = t.train.epochs * len(loader)
    if t.dp is not None:
        pt = make_private(
            model,
            opt,
            loader,
            target_epsilon=t.dp.target_epsilon,
            delta=t.dp.delta,
            epochs=t.train.epochs,
            max_grad_norm=t.dp.max_grad_norm,
            clipping=t.dp.clipping,
            accountant=t.dp.accountant,
            seed=cfg.seed,
            secure_rng=t.dp.secure_rng,
        )
        if not isinstance(pt.accountant.ledger, PrivacyLedger):  # the pipeline always samples Poisson
            raise TypeError(f"expected a Poisson-sampling PrivacyLedger, got {type(pt.accountant.ledger).__name__}")
        ledger, noise_multiplier, q, steps = pt.accountant.ledger, pt.noise_multiplier, pt.sample_rate, pt.steps
        fit(pt.model, pt.optimizer, pt.data_loader, steps=pt.steps, progress=progress, desc=f"train {t.name}")
        pt.optimizer.detach()
    else:
        fit(model, opt, loader, steps=n_steps, progress=progress, desc=f"train {t.name}")
    utility = {"test_accuracy": accuracy(model, pop.test), "train_accuracy": accuracy(model, members)}
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(st.path / "model.safetensors"))
    if ledger is not None:
        ledger.to_json(st.path / "ledger.json")
    secure = t.dp is not None and t.dp.secure_rng
    meta = {"utility": utility, "noise_multiplier": noise_multiplier, "sample_rate": q, "steps": steps,
            "secure_rng": secure}
    st.write_json("meta.json", meta)
    st.finish({"utility": utility})
    model.eval()
    return TrainedTarget(t.name, model, utility, ledger, noise_multiplier, q, steps, secure)


def audit_spec(t: TargetConfig, target: TrainedTarget, pop: Population, seed: int) -> AuditSpec | None:
    """What target ``t`` was trained with, as the audits take it (None for a non-DP target)."""
    if t.dp is None or target.noise_multiplier is None or target.sample_rate is None or not target.steps:
        return None
    return AuditSpec(
        lambda: build(t, pop.data),
        pop.members,
        sample_rate=target.sample_rate,
        steps=target.steps,
        delta=t.dp.delta,
        noise_multiplier=target.noise_multiplier,
        max_grad_norm=t.dp.max_grad_norm,
        clipping=t.dp.clipping,
        lr=t.train.lr,
        accountant=t.dp.accountant,
        seed=seed,
    )


def train_references(
    cfg: RunConfig, pop: Population, run_dir: Path, progress: bool, like: TrainedTarget | None = None
) -> list[nn.Module]:
    """The K reference models (rows 1..K of the mask), trained as one vectorised ensemble and cached.

    Default: ``cfg.attack.train`` and the first target's architecture. ``like`` (a DP target): its
    own architecture and training spec, DP-SGD-style with its ``max_grad_norm`` and noise multiplier,
    cached apart under ``references-<target>``.
    """
    spec, arch, clip, noise_multiplier, cache = cfg.attack.train, cfg.targets[0], 0.0, 0.0, run_dir / "references"
    if like is not None:
        arch = next(t for t in cfg.targets if t.name == like.name)
        if arch.dp is None or like.noise_multiplier is None:
            raise InvalidParameterError(f"references trained like target {like.name!r} need a DP target")
        spec, clip, noise_multiplier = arch.train, arch.dp.max_grad_norm, like.noise_multiplier
        cache = run_dir / f"references-{like.name}"
    tc = TrainConfig(
        epochs=float(spec.epochs),
        batch_size=spec.batch_size,
        lr=spec.lr,
        optimizer=spec.optimizer,
        momentum=spec.momentum,
        weight_decay=spec.weight_decay,
        seed=cfg.seed,
        max_grad_norm=clip,
        noise_multiplier=noise_multiplier,
    )
    ens = train_ensemble(lambda: build(arch, pop.data), pop.data, pop.mask[1:], tc, cache_dir=cache, progress=progress)
    return list(ens.models)


def references_like(cfg: RunConfig, target: TrainedTarget) -> bool:
    """Are ``target``'s attacks calibrated on references trained like it (a DP target, ``dp_references``)?"""
    return cfg.attack.dp_references and target.ledger is not None and target.noise_multiplier is not None


def claimed(target: TrainedTarget) -> dict[str, Any] | None:
    if target.ledger is None:
        return None
    eps = target.ledger.epsilon()
    return {
        "epsilon": eps if math.isfinite(eps) else "inf",
        "delta": target.ledger.delta,
        "accountant": target.ledger.accountant,
        "noise_multiplier": target.noise_multiplier,
        "sample_rate": target.sample_rate,
        "steps": target.steps,
        "noise": "os_csprng" if target.secure_rng else "seeded",
    }
