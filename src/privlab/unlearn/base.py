"""The shape every unlearning method has: a config, a result, a registry and one entry point.

``unlearn(model, forget, retain, config) -> UnlearnResult``: ``model`` was trained on
``forget + retain`` (use :func:`forget_split` to build the two from a training set and the rows a
person asked to remove); the result carries the unlearned model (a new module; the input's
parameters are not modified -- but SISA's removal moves its checkpoint directory on and deletes
the superseded checkpoints, so the input ensemble is stale afterwards and refused), the wall time
and the work done. Each method is one module registered here with :func:`register`;
:func:`get_method` looks it up, and a contract test runs over :data:`METHODS`.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from privlab._validation import check_bool, check_choice, check_int, check_real
from privlab.data import ArrayDataset
from privlab.errors import InvalidParameterError, UnsupportedModuleError
from privlab.train import TrainConfig, init_model, train_model

KINDS = ("exact", "approximate", "certified")
OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class UnlearnConfig:
    """How to unlearn. ``train`` is how the original model was (and a retrained one is) trained.

    Shared by the iterative methods: ``epochs`` passes over the data the method reads (forget set
    for gradient ascent, retain set for the others), ``lr``, ``batch_size``, ``optimizer``,
    ``momentum``, ``weight_decay``, ``seed``. Method-specific fields are documented in each
    method's module; unused fields are ignored.
    """

    method: str = "finetune"
    train: TrainConfig = field(default_factory=TrainConfig)
    epochs: float = 2.0
    lr: float = 0.01
    batch_size: int = 64
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0
    # NegGrad+ (Kurmanji et al. 2023): loss = alpha * CE(retain) - (1 - alpha) * CE(forget)
    alpha: float = 0.95
    # SCRUB (Kurmanji et al. 2023): KD temperature, max-step epochs, KD and CE weights of the min step
    kd_temperature: float = 4.0
    max_epochs: int = 1
    kd_weight: float = 1.0
    ce_weight: float = 1.0
    # SalUn (Fan et al. 2024): fraction of weights (largest forget-gradient magnitude) that may change
    saliency_fraction: float = 0.5
    # certified removal (Guo et al. 2020): L2 strength lambda, noise std sigma of b, target (epsilon, delta)
    l2: float = 1e-3
    sigma: float = 1.0
    epsilon: float = 1.0
    delta: float = 1e-4
    newton_iters: int = 30
    # draw certified removal's noise b from the OS CSPRNG (as DP-SGD's secure_rng); False: from the seed
    # (reproducible, and not private against anyone who knows the seed)
    secure_rng: bool = False
    # SISA (Bourtoule et al. 2021)
    shards: int = 4
    slices: int = 2
    checkpoint_dir: str = ""
    progress: bool = False

    def __post_init__(self) -> None:
        o = "UnlearnConfig"
        if not isinstance(self.train, TrainConfig):
            raise InvalidParameterError(
                f"The 'train' parameter of {o} must be a privlab.train.TrainConfig. Got {type(self.train)} instead."
            )
        check_real(self.epochs, "epochs", o, low=0.0, low_open=True)
        check_real(self.lr, "lr", o, low=0.0)
        check_int(self.batch_size, "batch_size", o, low=1)
        check_choice(self.optimizer, "optimizer", o, OPTIMIZERS)
        check_real(self.momentum, "momentum", o, low=0.0, high=1.0, high_open=True)
        check_real(self.weight_decay, "weight_decay", o, low=0.0)
        check_int(self.seed, "seed", o, low=0)
        check_real(self.alpha, "alpha", o, low=0.0, high=1.0)
        check_real(self.kd_temperature, "kd_temperature", o, low=0.0, low_open=True)
        check_int(self.max_epochs, "max_epochs", o, low=0)
        check_real(self.kd_weight, "kd_weight", o, low=0.0)
        check_real(self.ce_weight, "ce_weight", o, low=0.0)
        check_real(self.saliency_fraction, "saliency_fraction", o, low=0.0, high=1.0, low_open=True)
        check_real(self.l2, "l2", o, low=0.0, low_open=True)
        check_real(self.sigma, "sigma", o, low=0.0, low_open=True)
        check_real(self.epsilon, "epsilon", o, low=0.0, low_open=True)
        check_real(self.delta, "delta", o, low=0.0, high=1.0, low_open=True, high_open=True)
        check_int(self.newton_iters, "newton_iters", o, low=1)
        check_bool(self.secure_rng, "secure_rng", o)
        check_int(self.shards, "shards", o, low=1)
        check_int(self.slices, "slices", o, low=1)

    def step_config(self) -> TrainConfig:
        """The method's own optimisation settings as a TrainConfig (for :func:`privlab.train.train_model`)."""
        return replace(
            self.train,
            epochs=self.epochs,
            lr=self.lr,
            batch_size=self.batch_size,
            optimizer=self.optimizer,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            seed=self.seed,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["train"] = self.train.to_dict()
        return d


@dataclass(frozen=True, eq=False)
class UnlearnResult:
    """The unlearned model and what it cost.

    ``gradient_steps``: optimiser (or Newton) steps taken; ``examples_processed``: forward passes
    over examples; ``fraction_retrained``: share of the training set retrained from scratch or
    from a checkpoint (1 for retrain, the affected shards' share for SISA, 0 for the approximate
    methods); ``details``: method-specific facts (e.g. the certified removal bound).
    """

    model: nn.Module
    method: str
    seconds: float
    gradient_steps: int
    examples_processed: int
    fraction_retrained: float
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from privlab._json import jsonable

        out: dict[str, Any] = jsonable(
            {
                "method": self.method,
                "seconds": self.seconds,
                "gradient_steps": self.gradient_steps,
                "examples_processed": self.examples_processed,
                "fraction_retrained": self.fraction_retrained,
                "details": self.details,
            }
        )
        return out


UnlearnFn = Callable[[nn.Module, ArrayDataset, ArrayDataset, UnlearnConfig], UnlearnResult]
TrainFn = Callable[[nn.Module, ArrayDataset, UnlearnConfig], nn.Module]


def train_plain(model: nn.Module, data: ArrayDataset, config: UnlearnConfig) -> nn.Module:
    """Train ``model`` (in place) with :func:`privlab.train.train_model` and ``config.train``."""
    return train_model(model, data, config.train, progress=config.progress)


@dataclass(frozen=True)
class Method:
    """A registered method: ``unlearn`` and ``train`` (how the original must have been trained)."""

    name: str
    kind: str
    paper: str
    unlearn: UnlearnFn
    train: TrainFn = train_plain


METHODS: dict[str, Method] = {}


def register(name: str, kind: str, paper: str, train: TrainFn = train_plain) -> Callable[[UnlearnFn], UnlearnFn]:
    """Decorator: register ``fn(model, forget, retain, config) -> UnlearnResult`` as method ``name``."""
    check_choice(kind, "kind", "register", KINDS)

    def deco(fn: UnlearnFn) -> UnlearnFn:
        METHODS[name] = Method(name, kind, paper, fn, train)
        return fn

    return deco


def get_method(name: str) -> Method:
    """The registered method ``name``."""
    check_choice(name, "method", "get_method", METHODS)
    return METHODS[name]


def as_dataset(data: Any, name: str, owner: str = "unlearn") -> ArrayDataset:
    """``data`` (an ArrayDataset, a map-style Dataset of (x, y) or a DataLoader over one) as an ArrayDataset."""
    if isinstance(data, ArrayDataset):
        return data
    if isinstance(data, DataLoader):
        data = data.dataset
        if isinstance(data, ArrayDataset):
            return data
    if isinstance(data, Dataset) and hasattr(data, "__len__"):
        n = len(data)
        if n == 0:
            return ArrayDataset(torch.empty(0), torch.empty(0, dtype=torch.long))
        rows = [data[i] for i in range(n)]
        return ArrayDataset(
            torch.stack([torch.as_tensor(r[0]) for r in rows]), torch.as_tensor([int(r[1]) for r in rows])
        )
    raise InvalidParameterError(
        f"The '{name}' parameter of {owner} must be a privlab ArrayDataset, a map-style Dataset of (x, y) or a "
        f"DataLoader over one. Got {type(data).__name__} instead."
    )


def check_nonempty(data: ArrayDataset, name: str, owner: str = "unlearn") -> ArrayDataset:
    if len(data) == 0:
        raise InvalidParameterError(
            f"The '{name}' parameter of {owner} must contain at least one example. Got an empty set instead."
        )
    return data


def row_keys(data: ArrayDataset) -> list[bytes]:
    """One hashable key per row (features and label bytes): how rows are matched across sets."""
    x = data.x.reshape(len(data), -1).contiguous().numpy()
    y = data.y.numpy()
    return [x[i].tobytes() + b"|" + y[i].tobytes() for i in range(len(data))]


def match_rows(forget: ArrayDataset, train: ArrayDataset, owner: str = "forget_split") -> np.ndarray:
    """Index in ``train`` of each row of ``forget``; raises if a row is not in ``train``, or is repeated
    in ``forget`` more often than in ``train`` (identical rows are matched to distinct positions)."""
    where: dict[bytes, list[int]] = {}
    for i, k in enumerate(row_keys(train)):
        where.setdefault(k, []).append(i)
    out = []
    missing = repeated = 0
    for k in row_keys(forget):
        lst = where.get(k)
        if lst is None:
            missing += 1
        elif not lst:  # in train, but forget holds it more often than train does
            repeated += 1
        else:
            out.append(lst.pop(0))
    if repeated:
        raise InvalidParameterError(
            f"The 'forget' parameter of {owner} must not repeat a row more often than the training set holds it. "
            f"Got {repeated} of {len(forget)} rows that are extra copies instead."
        )
    if missing:
        raise InvalidParameterError(
            f"The 'forget' parameter of {owner} must be a subset of the training set. Got {missing} of "
            f"{len(forget)} rows that are not in it instead."
        )
    return np.asarray(out, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class ForgetSplit:
    """A training set cut into the rows to forget and the rows to keep (``index``: positions in train)."""

    forget: ArrayDataset
    retain: ArrayDataset
    index: np.ndarray
    n_train: int


def forget_split(train: Any, forget: Any) -> ForgetSplit:
    """Cut ``train`` into (forget, retain). ``forget``: row indices, a bool mask, or the rows themselves.

    Raises InvalidParameterError naming 'forget' when it is empty, out of range, repeats a row or
    holds rows that are not in ``train``.
    """
    tr = check_nonempty(as_dataset(train, "train", "forget_split"), "train", "forget_split")
    n = len(tr)
    if isinstance(forget, ArrayDataset | DataLoader | Dataset):
        idx = match_rows(check_nonempty(as_dataset(forget, "forget", "forget_split"), "forget", "forget_split"), tr)
    else:
        arr = np.asarray(forget)
        if arr.dtype == bool:
            if arr.shape != (n,):
                raise InvalidParameterError(
                    f"The 'forget' parameter of forget_split must be a bool mask of length {n}. "
                    f"Got shape {arr.shape} instead."
                )
            idx = np.flatnonzero(arr)
        elif arr.size == 0 or np.issubdtype(arr.dtype, np.integer):
            idx = arr.astype(np.int64).reshape(-1)
        else:
            raise InvalidParameterError(
                f"The 'forget' parameter of forget_split must be row indices, a bool mask or a dataset. "
                f"Got an array of dtype {arr.dtype} instead."
            )
        if len(idx) and (idx.min() < 0 or idx.max() >= n):
            raise InvalidParameterError(
                f"The 'forget' parameter of forget_split must index rows of the training set (0..{n - 1}). "
                f"Got indices in [{idx.min()}, {idx.max()}] instead."
            )
        if len(np.unique(idx)) != len(idx):
            raise InvalidParameterError(
                "The 'forget' parameter of forget_split must not repeat a row. Got duplicated indices instead."
            )
    if len(idx) == 0:
        raise InvalidParameterError(
            "The 'forget' parameter of forget_split must contain at least one example. Got an empty set instead."
        )
    if len(idx) == n:
        raise InvalidParameterError(
            f"The 'forget' parameter of forget_split must leave at least one row to retain. Got all {n} rows instead."
        )
    keep = np.ones(n, dtype=bool)
    keep[idx] = False
    t = torch.from_numpy
    return ForgetSplit(tr.subset(t(np.sort(idx))), tr.subset(t(keep)), np.sort(idx), n)


FACTORY_ATTR = "privlab_factory"


def attach_factory(model: nn.Module, factory: Callable[[], nn.Module]) -> nn.Module:
    """Record on ``model`` (in place) the zero-argument ``factory`` that builds its architecture.

    :func:`reinit` (hence ``retrain`` and the models :mod:`privlab.unlearn.evaluation` trains) then
    rebuilds the model with ``factory()`` under the seed, which re-draws every parameter.
    """
    if not callable(factory):
        raise InvalidParameterError(
            f"The 'factory' parameter of attach_factory must be a zero-argument callable returning the model. "
            f"Got {type(factory).__name__} instead."
        )
    setattr(model, FACTORY_ATTR, factory)
    return model


def uncovered_parameters(model: nn.Module) -> list[str]:
    """Names of ``model``'s parameters owned by a module without ``reset_parameters`` (e.g. a raw
    ``nn.Parameter`` on a custom module, ``nn.MultiheadAttention.in_proj_weight``)."""
    out = []
    for name, mod in model.named_modules():
        if not callable(getattr(mod, "reset_parameters", None)):
            out += [f"{name}.{p}" if name else p for p, _ in mod.named_parameters(recurse=False)]
    return out


def reinit(
    model: nn.Module, seed: int, *, factory: Callable[[], nn.Module] | None = None, strict: bool = True
) -> nn.Module:
    """A freshly initialised model of ``model``'s architecture, seed ``seed``.

    With a factory (``factory``, or one recorded by :func:`attach_factory`): ``factory()`` under
    ``torch.manual_seed(seed)`` (:func:`privlab.train.init_model`), checked to have ``model``'s
    parameter names and shapes. Otherwise a copy of ``model`` with every submodule's
    ``reset_parameters`` called under the seed; parameters no ``reset_parameters`` covers would keep
    ``model``'s (trained) values, so ``strict`` refuses them (UnsupportedModuleError). ``strict=False``
    is for callers that load a full state dict next, or whose template was never trained (SISA).
    """
    fac = factory if factory is not None else getattr(model, FACTORY_ATTR, None)
    if fac is not None:
        m = init_model(fac, seed)
        want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        got = {k: tuple(v.shape) for k, v in m.state_dict().items()}
        if want != got:
            raise InvalidParameterError(
                "The 'factory' parameter of reinit must build the model's architecture. Got a model whose parameter "
                f"names or shapes differ (e.g. {sorted(set(want.items()) ^ set(got.items()))[:3]}) instead."
            )
        return attach_factory(m, fac)
    if strict:
        left = uncovered_parameters(model)
        if left:
            raise UnsupportedModuleError(
                "The 'model' parameter of retraining from scratch must be re-initialisable: every parameter owned by "
                f"a module with reset_parameters. Got {left}, which would keep the trained values (that saw the "
                "forget set), instead. Record the architecture's factory with "
                "privlab.unlearn.attach_factory(model, factory) so the model is rebuilt."
            )
    m = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for mod in m.modules():
            reset = getattr(mod, "reset_parameters", None)
            if callable(reset):
                reset()
    return m


class ForgetRetainOverlapWarning(UserWarning):
    """Rows of the forget set also appear, identical (features and label), in the retain set."""


def rows_in(rows: ArrayDataset, pool: ArrayDataset) -> int:
    """How many rows of ``rows`` have an identical row (same features and label, :func:`row_keys`) in ``pool``."""
    seen = set(row_keys(pool))
    return sum(k in seen for k in row_keys(rows))


def unlearn(model: nn.Module, forget: Any, retain: Any, config: UnlearnConfig) -> UnlearnResult:
    """Remove ``forget`` from ``model`` (trained on forget + retain) with ``config.method``.

    ``forget`` and ``retain`` may be ArrayDatasets, map-style datasets or DataLoaders (as with
    ``make_private``). The input model's parameters are not modified; SISA's removal deletes the
    input ensemble's superseded checkpoints (they saw the removed rows), after which the input is
    stale and refused -- use the returned ensemble.

    A forget row with an identical twin in ``retain`` raises :class:`ForgetRetainOverlapWarning`
    and is counted in ``details["forget_rows_in_retain"]``: if the two are one record (a bad
    split), retain keeps teaching it and nothing is forgotten; if they are two people's identical
    records (Adult has such duplicates), keeping the retained one is correct.
    """
    if not isinstance(config, UnlearnConfig):
        raise InvalidParameterError(
            f"The 'config' parameter of unlearn must be an UnlearnConfig. Got {type(config).__name__} instead."
        )
    method = get_method(config.method)
    if not isinstance(model, nn.Module):
        raise InvalidParameterError(
            f"The 'model' parameter of unlearn must be a torch.nn.Module. Got {type(model).__name__} instead."
        )
    f = check_nonempty(as_dataset(forget, "forget"), "forget")
    r = check_nonempty(as_dataset(retain, "retain"), "retain")
    if f.x.shape[1:] != r.x.shape[1:]:
        raise InvalidParameterError(
            f"The 'forget' parameter of unlearn must have rows shaped like retain's {tuple(r.x.shape[1:])}. "
            f"Got {tuple(f.x.shape[1:])} instead."
        )
    overlap = rows_in(f, r)
    if overlap:
        warnings.warn(
            f"{overlap} of the {len(f)} rows of 'forget' have an identical row in 'retain': if they are the same "
            "records, retain keeps teaching them and they are not forgotten (check the split).",
            ForgetRetainOverlapWarning,
            stacklevel=2,
        )
    start = time.perf_counter()  # the method's time: the overlap check above is not part of it
    res = method.unlearn(model, f, r, config)
    return replace(res, seconds=time.perf_counter() - start, details={**res.details, "forget_rows_in_retain": overlap})
