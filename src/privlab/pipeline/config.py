"""Typed, frozen run configuration that round-trips to YAML/JSON, with errors that name the key.

What changes the privacy guarantee (``DPConfig``: epsilon, delta, clipping, sampling) is kept
apart from what only changes speed or utility (``TrainSpec``: epochs, learning rate, batch size).
Loading uses ``yaml.safe_load`` only, rejects unknown keys, wrong types and out-of-range values,
and every message names the offending key path, e.g. ``targets[1].dp.target_epsilon``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from privlab._validation import check_choice, check_int, check_real
from privlab.errors import ConfigError, InvalidParameterError
from privlab.fl.config import FedConfig
from privlab.llm.config import LLMRunConfig
from privlab.synth.config import SynthRunConfig
from privlab.unlearn.run import UnlearnRunConfig

ATTACK_NAMES = ("loss", "attack_r", "lira_online", "lira_offline", "rmia_offline", "rmia_online")


@dataclass(frozen=True)
class DataConfig:
    """The population membership is decided over: ``population`` examples of ``dataset``'s train split."""

    dataset: str = "mnist"
    population: int = 10000
    test_size: int = 10000

    def __post_init__(self) -> None:
        check_choice(self.dataset, "dataset", "data", ("mnist", "fashion_mnist", "adult"))
        check_int(self.population, "population", "data", low=20)
        check_int(self.test_size, "test_size", "data", low=10)


@dataclass(frozen=True)
class TrainSpec:
    """Optimisation settings that do not change the privacy guarantee."""

    epochs: int = 20
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    optimizer: str = "sgd"

    def __post_init__(self) -> None:
        check_int(self.epochs, "epochs", "train", low=1)
        check_int(self.batch_size, "batch_size", "train", low=1)
        check_real(self.lr, "lr", "train", low=0.0, low_open=True)
        check_real(self.momentum, "momentum", "train", low=0.0, high=1.0, high_open=True)
        check_real(self.weight_decay, "weight_decay", "train", low=0.0)
        check_choice(self.optimizer, "optimizer", "train", ("sgd", "adam"))


@dataclass(frozen=True)
class DPConfig:
    """What the privacy guarantee depends on."""

    target_epsilon: float = 8.0
    delta: float = 1e-5
    max_grad_norm: float = 1.0
    clipping: str = "flat"
    accountant: str = "pld"
    # False: sampling and noise seeded from the run's seed (reproducible; not private against anyone who
    # knows the seed, which the report publishes); True: from the OS CSPRNG (make_private's secure_rng)
    secure_rng: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.secure_rng, bool):
            raise InvalidParameterError(
                f"The 'secure_rng' parameter of dp must be true or false. Got {self.secure_rng!r} instead."
            )
        check_real(self.target_epsilon, "target_epsilon", "dp", low=0.0, low_open=True)
        check_real(self.delta, "delta", "dp", low=0.0, high=1.0, low_open=True, high_open=True)
        check_real(self.max_grad_norm, "max_grad_norm", "dp", low=0.0, low_open=True)
        check_choice(self.clipping, "clipping", "dp", ("flat", "per_layer", "ghost"))
        check_choice(self.accountant, "accountant", "dp", ("pld", "rdp"))


@dataclass(frozen=True)
class TargetConfig:
    """One model to train and evaluate; ``dp: null`` trains without privacy."""

    name: str
    model: str = "mlp"
    hidden: tuple[int, ...] = (256, 256)
    train: TrainSpec = field(default_factory=TrainSpec)
    dp: DPConfig | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            raise InvalidParameterError(
                f"The 'name' parameter of targets must be a non-empty identifier. Got {self.name!r} instead."
            )
        check_choice(self.model, "model", "targets", ("mlp", "cnn"))
        for h in self.hidden:
            check_int(h, "hidden", "targets", low=1)


@dataclass(frozen=True)
class AttackConfig:
    """Reference models and the membership-inference attacks run against every target.

    Non-private targets are attacked with references trained by ``train`` (architecture of the first
    target). With ``dp_references`` (default), a DP target gets its own references, trained the way
    it was (Carlini et al. 2022's threat model: the attacker knows the training algorithm): its
    architecture and training spec, each example's gradient clipped to its ``max_grad_norm`` and
    noise at its calibrated noise multiplier (flat clipping, fixed-size batches; see
    :class:`privlab.train.TrainConfig`).
    """

    reference_models: int = 16
    attacks: tuple[str, ...] = ATTACK_NAMES
    train: TrainSpec = field(default_factory=TrainSpec)
    dp_references: bool = True

    def __post_init__(self) -> None:
        check_int(self.reference_models, "reference_models", "attack", low=2)
        for a in self.attacks:
            check_choice(a, "attacks", "attack", ATTACK_NAMES)


@dataclass(frozen=True)
class AuditConfig:
    """The one-run audit of each DP target (Steinke et al. 2023) with white-box gradient canaries."""

    enabled: bool = True
    canaries: int = 1000
    confidence: float = 0.95
    canary_gradient: str = "dirac"  # the only kind implemented; kept as a key so configs say what they audit

    def __post_init__(self) -> None:
        check_int(self.canaries, "canaries", "audit", low=10)
        check_real(self.confidence, "confidence", "audit", low=0.5, high=1.0, high_open=True)
        check_choice(self.canary_gradient, "canary_gradient", "audit", ("dirac",))


@dataclass(frozen=True)
class RunConfig:
    """A whole run: data -> targets -> reference models -> attacks -> audits -> report."""

    name: str = "run"
    seed: int = 0
    output_dir: str = "privlab-runs"
    data: DataConfig = field(default_factory=DataConfig)
    targets: tuple[TargetConfig, ...] = (TargetConfig(name="target"),)
    attack: AttackConfig = field(default_factory=AttackConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    federated: FedConfig | None = None  # optional: a Flower FedAvg run (privlab.fl) and its report section
    llm: LLMRunConfig | None = None  # language-model canaries, extraction, MIA (privlab.llm)
    unlearning: UnlearnRunConfig | None = None  # privlab.unlearn: methods evaluated against retraining
    synthetic: SynthRunConfig | None = None

    def __post_init__(self) -> None:
        check_int(self.seed, "seed", "run", low=0)
        if not self.targets:
            raise InvalidParameterError("The 'targets' parameter of run must list at least one target. Got [] instead.")
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise InvalidParameterError(f"The 'targets' parameter of run must have unique names. Got {names} instead.")

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [_to_plain(v) for v in obj]
    return obj


def _build(cls: Any, data: Any, path: str) -> Any:
    """Construct dataclass ``cls`` from ``data`` strictly, prefixing every error with ``path``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {type(data).__name__} {data!r}.")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(f"unknown key '{where}{unknown[0]}'. Allowed keys here: {', '.join(sorted(known))}.")
    kwargs = {k: _coerce(hints[k], v, f"{path}.{k}" if path else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except InvalidParameterError as exc:
        msg = str(exc)
        # "The 'x' parameter of owner must be ..." -> "path.x: must be ..."
        if msg.startswith("The '") and " parameter of " in msg:
            key = msg.split("'")[1]
            rest = msg.split(" must ", 1)[1] if " must " in msg else msg
            prefix = f"{path}." if path else ""
            raise ConfigError(f"{prefix}{key}: must {rest}") from None
        raise ConfigError(f"{path or 'config'}: {msg}") from None


def _coerce(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, path)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__} {value!r}.")
        return tuple(_coerce(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{path}: expected a number, got {type(value).__name__} {value!r}.")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {type(value).__name__} {value!r}.")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {type(value).__name__} {value!r}.")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {type(value).__name__} {value!r}.")
        return value
    return value


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Build a validated :class:`RunConfig` from plain data."""
    cfg: RunConfig = _build(RunConfig, data, "")
    return cfg


def load_config(path: str | Path) -> RunConfig:
    """Read a YAML (or JSON) config file with ``yaml.safe_load`` and validate it."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file {p} does not exist.")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    if data is None:
        raise ConfigError(f"{p}: the config file is empty.")
    return config_from_dict(data)
