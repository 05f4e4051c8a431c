"""Attack a model someone already trained: their weights, their members and non-members.

Membership inference on an existing target (the setting of ML Privacy Meter's "bring your own
model"): the evaluation pool is ``n`` of the target's training examples (members) and ``n``
examples it never saw (non-members), balanced. ``K`` reference models are trained *like the
target* -- the same architecture (``model_factory``) and training spec (``train``, DP-SGD-style
clipping and noise when the target was DP) -- each on its own random half of the pool, so each
pool example is IN for about half of them (online LiRA/RMIA; Carlini et al. 2022, Sec. IV; the
offline attacks use only the OUT models). The target's signals on the pool are then scored by
:func:`~privlab.attacks.run_attacks` against its true membership.

>>> res = attack_model(model, members=train_set, nonmembers=test_set,                 # doctest: +SKIP
...                    model_factory=lambda: MLP(hidden=(128,)), train=TrainConfig(epochs=30))
>>> print(res.table())

:func:`load_trained` reads what ``privlab train`` writes (``model.safetensors``, ``config.json``,
``ledger.json``) and returns the model, its factory and a reference training spec copied from its
config; :func:`model_from_state` rebuilds a privlab MLP or SmallCNN from bare safetensors weights.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from privlab._validation import check_int
from privlab.attacks.results import DEFAULT_ATTACKS, MIAResult, run_attacks
from privlab.attacks.signals import PopulationSignals, compute_signals
from privlab.data import ArrayDataset, membership_mask
from privlab.errors import CorruptArtifactError, InvalidParameterError
from privlab.models import MLP, SmallCNN
from privlab.train import TrainConfig, train_ensemble

_OWNER = "attack_model"


def _check_data(d: Any, name: str) -> ArrayDataset:
    if not isinstance(d, ArrayDataset) or len(d) == 0:
        raise InvalidParameterError(
            f"The '{name}' parameter of {_OWNER} must be a non-empty ArrayDataset. "
            f"Got {type(d).__name__}{'' if not isinstance(d, ArrayDataset) else ' of length 0'} instead."
        )
    return d


def _concat(a: ArrayDataset, b: ArrayDataset) -> ArrayDataset:
    if a.x.shape[1:] != b.x.shape[1:]:
        raise InvalidParameterError(
            f"The 'nonmembers' parameter of {_OWNER} must have examples shaped like the members' "
            f"{tuple(a.x.shape[1:])}. Got {tuple(b.x.shape[1:])} instead."
        )
    return ArrayDataset(torch.cat([a.x, b.x]), torch.cat([a.y, b.y]), a.name, a.classes or b.classes)


def attack_model(
    model: nn.Module,
    members: ArrayDataset,
    nonmembers: ArrayDataset,
    model_factory: Callable[[], nn.Module],
    train: TrainConfig,
    *,
    n_reference: int = 16,
    n_examples: int | None = 4000,
    n_population: int = 2000,
    attacks: Sequence[str] = DEFAULT_ATTACKS,
    seed: int = 0,
    n_bootstrap: int = 200,
    augment: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    describe: str = "",
) -> MIAResult:
    """Membership inference against ``model``, whose training set contains ``members`` and not ``nonmembers``.

    The pool holds ``n_examples // 2`` members and as many non-members, drawn at random (seeded);
    ``None``: as many as the smaller side allows. Non-members left over serve as RMIA's population
    points ``z`` (up to ``n_population``). References: ``n_reference`` models from
    ``model_factory`` trained with ``train`` on random halves of the pool (cached under
    ``cache_dir``). ``describe`` is stored in the result's config (how the references were trained).
    """
    if not isinstance(model, nn.Module):
        raise InvalidParameterError(f"The 'model' parameter of {_OWNER} must be an nn.Module. Got {model!r} instead.")
    members, nonmembers = _check_data(members, "members"), _check_data(nonmembers, "nonmembers")
    k = check_int(n_reference, "n_reference", _OWNER, low=1)
    check_int(seed, "seed", _OWNER, low=0)
    check_int(n_population, "n_population", _OWNER, low=0)
    side = min(len(members), len(nonmembers))
    if n_examples is not None:
        side = min(side, check_int(n_examples, "n_examples", _OWNER, low=2) // 2)
    rng = np.random.default_rng(seed)
    m_idx = torch.from_numpy(rng.permutation(len(members))[:side])
    n_order = rng.permutation(len(nonmembers))
    pool = _concat(members.subset(m_idx), nonmembers.subset(torch.from_numpy(n_order[:side])))
    membership = np.r_[np.ones(side, bool), np.zeros(side, bool)]
    leftover = n_order[side : side + n_population]
    population = nonmembers.subset(torch.from_numpy(leftover)) if len(leftover) else None

    ref_mask = membership_mask(k, len(pool), seed=seed + 1)
    ens = train_ensemble(model_factory, pool, ref_mask, train, cache_dir=cache_dir, progress=progress)
    model = model.eval()
    target_sig = compute_signals(model, pool, augment=augment)
    ref_sig = compute_signals(ens, pool, augment=augment)
    pop = None
    if population is not None:
        pop = PopulationSignals(compute_signals(model, population, augment=augment),
                                compute_signals(ens, population, augment=augment))
    res = run_attacks(target_sig, membership, ref_sig, ref_mask, attacks=list(attacks), population_signals=pop,
                      seed=seed, n_bootstrap=n_bootstrap)
    config = dict(res.config) | {
        "target": "a given model",
        "n_members": side,
        "n_nonmembers": side,
        "reference_training": train.to_dict(),
        "references_trained": describe or "with the given model_factory and train config, on random halves of the pool",
    }
    return dataclasses.replace(res, config=config)


_MLP_KEY = re.compile(r"^net\.(\d+)\.(weight|bias)$")
_CNN_KEYS = {"features.0.weight", "features.4.weight", "classifier.1.weight", "classifier.3.weight"}


def model_from_state(state: dict[str, torch.Tensor]) -> tuple[Callable[[], nn.Module], str]:
    """A factory of the privlab model these weights belong to (MLP or SmallCNN, default activations) and its name.

    MLP widths and class counts are read from the weight shapes. Anything else: pass your own
    ``model_factory`` to :func:`attack_model`.
    """
    if set(state) >= _CNN_KEYS:
        in_ch, classes = int(state["features.0.weight"].shape[1]), int(state["classifier.3.weight"].shape[0])
        if "features.1.weight" in state:
            raise InvalidParameterError(
                "The 'state' parameter of model_from_state holds a SmallCNN with GroupNorm, whose group count is not "
                "in the weights. Got keys with 'features.1.weight' instead: pass model_factory to attack_model."
            )
        return (lambda: SmallCNN(in_channels=in_ch, num_classes=classes)), (
            f"SmallCNN(in_channels={in_ch}, num_classes={classes})"
        )
    linear = sorted(
        (int(m.group(1)), v) for key, v in state.items() if (m := _MLP_KEY.match(key)) and m.group(2) == "weight"
    )
    if linear and len(linear) * 2 == len(state) and all(v.ndim == 2 for _, v in linear):
        in_features = int(linear[0][1].shape[1])
        hidden = tuple(int(v.shape[0]) for _, v in linear[:-1])
        classes = int(linear[-1][1].shape[0])
        return (lambda: MLP(in_features=in_features, hidden=hidden, num_classes=classes)), (
            f"MLP(in_features={in_features}, hidden={hidden}, num_classes={classes})"
        )
    raise InvalidParameterError(
        "The 'state' parameter of model_from_state must be the weights of a privlab MLP or SmallCNN. "
        f"Got keys {sorted(state)[:6]} instead: pass model_factory to attack_model."
    )


@dataclass(frozen=True, eq=False)
class TrainedModel:
    """A model read from disk, the factory of its architecture, and how references should be trained like it."""

    model: nn.Module
    factory: Callable[[], nn.Module]
    architecture: str
    train: TrainConfig | None  # None: not known from the files (give it)
    dataset: str | None
    describe: str


def _dp_like(clip: float, sigma: float) -> dict[str, float]:
    """TrainConfig's DP-SGD-style fields (one place, should their names change)."""
    return {"dp_max_grad_norm": clip, "dp_noise_multiplier": sigma}


def load_trained(path: str | os.PathLike[str]) -> TrainedModel:
    """Read a model: a ``privlab train`` directory (or its ``model.safetensors``), or bare safetensors weights.

    For a ``privlab train`` checkpoint the reference spec copies its config: epochs, batch size,
    learning rate, momentum, and DP-SGD-style clipping at its ``max_grad_norm`` with its noise
    multiplier (fixed-size batches, constant learning rate: the reference trainer has no schedule).
    """
    p = Path(path)
    weights = p / "model.safetensors" if p.is_dir() else p
    if not weights.is_file():
        raise InvalidParameterError(
            f"The 'path' parameter of load_trained must be a safetensors file or a privlab train directory. "
            f"Got {str(path)!r} (no {weights.name} there) instead."
        )
    try:
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises several types on bad files
        raise CorruptArtifactError(f"{weights} is not a readable safetensors file: {exc}") from exc
    factory, arch = model_from_state(state)
    model = factory()
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CorruptArtifactError(f"{weights} does not load into {arch}: {exc}") from exc
    meta_path = weights.parent / "config.json"
    if not meta_path.exists():
        return TrainedModel(model.eval(), factory, arch, None, None, f"architecture {arch} (from the weights)")
    from privlab.dp.checkpoint import load_checkpoint

    ckpt = load_checkpoint(weights.parent, model)  # verifies the weights' checksum and the ledger
    c = ckpt.config
    sigma, clip = float(c.get("noise_multiplier") or 0.0), float(c.get("max_grad_norm") or 0.0)
    plain = TrainConfig(
        epochs=float(c.get("epochs", 10)),
        batch_size=int(c.get("batch_size", 128)),
        lr=float(c.get("lr", 0.1)),
        momentum=float(c.get("momentum", 0.0)),
    )
    spec = TrainConfig.from_dict(plain.to_dict() | _dp_like(clip if sigma > 0 else 0.0, sigma))
    describe = (
        f"like the target ({arch}, privlab train config: {spec.epochs:g} epochs, batch {spec.batch_size}, "
        f"lr {spec.lr:g}, momentum {spec.momentum:g}"
        + (f", DP-SGD-style: clipped at {clip:g}, noise multiplier {sigma:.4g}" if sigma > 0 else "")
        + "; fixed-size batches and a constant learning rate)"
    )
    ds = c.get("dataset")
    return TrainedModel(model.eval(), factory, arch, spec, str(ds) if ds else None, describe)


def load_membership_file(path: str | os.PathLike[str]) -> tuple[ArrayDataset, ArrayDataset]:
    """(members, non-members) from a safetensors or .npz file with ``x`` (N, ...), ``y`` (N,) and ``member`` (N,)."""
    p = Path(path)
    try:
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                arrays = {k: torch.from_numpy(np.asarray(z[k])) for k in z.files}
        else:
            arrays = load_file(str(p))
    except Exception as exc:
        raise CorruptArtifactError(f"Cannot read data file {p}: {exc}") from exc
    missing = sorted({"x", "y", "member"} - set(arrays))
    if missing:
        raise InvalidParameterError(
            f"The 'data' file {p} must hold tensors 'x', 'y' and 'member' (1 = in the model's training set). "
            f"Got {sorted(arrays)} instead (missing {missing})."
        )
    x, y, member = arrays["x"].float(), arrays["y"].long(), arrays["member"].bool()
    if not (len(x) == len(y) == len(member)) or member.all() or not member.any():
        raise InvalidParameterError(
            f"The 'data' file {p} must hold as many x, y and member rows, with members and non-members. "
            f"Got {len(x)}, {len(y)}, {len(member)} rows and {int(member.sum())} members instead."
        )
    data = ArrayDataset(x, y, p.stem)
    return data.subset(member), data.subset(~member)
