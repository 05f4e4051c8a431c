"""The unlearning stage of ``privlab run`` / ``privlab unlearn``: every configured method evaluated on
one training set, cached per method with the pipeline's stage cache, and a report section.

Models are MLPs of ``hidden`` widths (``certified``: a linear model on unit-norm rows, Guo et al.'s
setting) trained with ``settings.train``; ``per_method`` overrides fields of ``settings`` for one
method (e.g. ``{scrub: {lr: 0.02}}``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn
from tqdm.auto import tqdm

from privlab._validation import check_choice, check_int, check_real
from privlab.data import ArrayDataset
from privlab.errors import InvalidParameterError
from privlab.models import MLP
from privlab.train import TrainConfig
from privlab.unlearn.base import METHODS, UnlearnConfig
from privlab.unlearn.certified import UnitNorm
from privlab.unlearn.evaluation import FORGET_KINDS, choose_forget, evaluate, scaling, sequence
from privlab.unlearn.ulira import ULiRAConfig, ulira

DEFAULT_METHODS = ("retrain", "sisa", "finetune", "gradient_ascent", "neggrad_plus", "scrub", "salun", "certified")


@dataclass(frozen=True)
class UnlearnRunConfig:
    """The ``unlearning:`` section of a run config (every key optional)."""

    methods: tuple[str, ...] = DEFAULT_METHODS
    forget_fraction: float = 0.05  # the main forget set, as a fraction of the training set
    forget_kind: str = "random"  # random | class (drawn from one class only)
    forget_class: int = 0
    scaling: tuple[float, ...] = (0.01, 0.05, 0.1)  # forget-set fractions of criterion 5 (empty: skip)
    requests: int = 10  # removal requests in a row, criterion 6 (0: skip)
    shadows: int = 8  # U-LiRA shadow models per method (0: no U-LiRA)
    hidden: tuple[int, ...] = (128,)
    settings: UnlearnConfig = field(
        default_factory=lambda: UnlearnConfig(train=TrainConfig(epochs=20, batch_size=32, lr=0.05))
    )
    per_method: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        o = "unlearning"
        if not self.methods:
            raise InvalidParameterError(f"The 'methods' parameter of {o} must list at least one method. Got [].")
        for m in self.methods:
            check_choice(m, "methods", o, METHODS)
        check_real(self.forget_fraction, "forget_fraction", o, low=0.0, high=0.5, low_open=True)
        check_choice(self.forget_kind, "forget_kind", o, FORGET_KINDS)
        check_int(self.forget_class, "forget_class", o, low=0)
        for f in self.scaling:
            check_real(f, "scaling", o, low=0.0, high=0.5, low_open=True)
        check_int(self.requests, "requests", o, low=0)
        check_int(self.shadows, "shadows", o, low=0)
        if self.shadows and (self.shadows < 6 or self.shadows % 2):
            raise InvalidParameterError(
                f"The 'shadows' parameter of {o} must be 0 or an even number >= 6. Got {self.shadows} instead."
            )
        for h in self.hidden:
            check_int(h, "hidden", o, low=1)
        known = {f.name for f in dataclasses.fields(UnlearnConfig)}
        for m, over in self.per_method.items():
            check_choice(m, "per_method", o, METHODS)
            bad = sorted(set(over) - known - {"train"})
            if bad:
                raise InvalidParameterError(
                    f"The 'per_method' parameter of {o} must override UnlearnConfig fields. Got {bad} for {m} instead."
                )
            self.config_for(m)  # validates values

    def config_for(self, method: str) -> UnlearnConfig:
        over = dict(self.per_method.get(method, {}))
        if "train" in over:
            over["train"] = TrainConfig.from_dict({**self.settings.train.to_dict(), **over["train"]})
        return replace(self.settings, method=method, **over)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["settings"] = self.settings.to_dict()
        return d


def factory_for(method: str, data: ArrayDataset, hidden: tuple[int, ...]) -> Callable[[], nn.Module]:
    d, c = int(np.prod(data.x.shape[1:])), data.num_classes
    if method == "certified":
        return lambda: nn.Sequential(UnitNorm(), nn.Linear(d, c))
    return lambda: MLP(in_features=d, hidden=hidden, num_classes=c)


def evaluate_method(
    ucfg: UnlearnRunConfig, method: str, train: ArrayDataset, test: ArrayDataset, seed: int, progress: bool
) -> dict[str, Any]:
    """All six criteria for one method, as JSON-ready data (``method=None`` data for the original is separate)."""
    cfg = ucfg.config_for(method)
    fac = factory_for(method, train, ucfg.hidden)
    idx = choose_forget(train, ucfg.forget_fraction, ucfg.forget_kind, seed, ucfg.forget_class)
    t = time.perf_counter()
    ul = ULiRAConfig(shadows=ucfg.shadows, seed=seed) if ucfg.shadows else None
    main = evaluate(
        method, fac, train, idx, test, cfg, ulira_config=ul, forget_kind=ucfg.forget_kind, progress=progress
    )
    out: dict[str, Any] = {"main": main.to_dict()}
    if ucfg.scaling:
        sc = scaling(method, fac, train, test, cfg, ucfg.scaling, kind=ucfg.forget_kind, seed=seed)
        out["scaling"] = [{"fraction": f, **e.to_dict()} for f, e in zip(ucfg.scaling, sc, strict=True)]
    if ucfg.requests:
        out["sequence"] = [s.to_dict() for s in sequence(method, fac, train, idx, test, cfg, requests=ucfg.requests)]
    out["seconds"] = time.perf_counter() - t
    return out


def evaluate_original(ucfg: UnlearnRunConfig, train: ArrayDataset, seed: int, progress: bool) -> dict[str, Any]:
    """U-LiRA of the original models (no unlearning): the attack's positive control."""
    idx = choose_forget(train, ucfg.forget_fraction, ucfg.forget_kind, seed, ucfg.forget_class)
    cfg = ucfg.config_for("finetune")
    res = ulira(
        None, factory_for("finetune", train, ucfg.hidden), train, idx, cfg, ULiRAConfig(ucfg.shadows, seed=seed)
    )
    return res.to_dict()


def run_unlearning(
    ucfg: UnlearnRunConfig,
    train: ArrayDataset,
    test: ArrayDataset,
    run_dir: Path,
    *,
    seed: int,
    data_key: Any,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate every method through the stage cache (one stage per method) and return the report
    section (``Section.to_dict()``). ``data_key``: what the training/test sets depend on."""
    from privlab.pipeline.cache import stage
    from privlab.unlearn.report import unlearning_section

    results: dict[str, Any] = {}
    common = {"data": data_key, "seed": seed, "unlearning": {k: v for k, v in ucfg.to_dict().items() if k != "methods"}}
    if ucfg.shadows:
        st = stage(run_dir, "unlearn-original", {**common, "method": None, "version": 1})
        if not st.done:
            st.begin()
            st.write_json("result.json", evaluate_original(ucfg, train, seed, progress))
            st.finish()
        results["original"] = st.read_json("result.json")
    for m in tqdm(ucfg.methods, disable=not progress, desc="unlearning methods"):
        st = stage(run_dir, f"unlearn-{m}", {**common, "method": m, "version": 1})
        if not st.done:
            st.begin()
            st.write_json("result.json", evaluate_method(ucfg, m, train, test, seed, progress))
            st.finish()
        results[m] = st.read_json("result.json")
    return unlearning_section(ucfg, results).to_dict()
