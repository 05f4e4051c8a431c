"""Fine-tuning a causal LM on a token stream, non-privately or with DP-SGD through ``make_private``.

Windows of ``seq_len + 1`` tokens (non-overlapping) are the examples; the loss is the mean
next-token cross-entropy. With ``dp`` set, :func:`privlab.dp.make_private` supplies Poisson
sampling (sample rate ``batch_size / N``), per-example clipping (ghost by default), Gaussian noise
calibrated to ``target_epsilon`` for exactly ``steps`` steps, and the accountant; the guarantee is
example-level (one window) (epsilon, delta)-DP. With ``dp.privacy_unit`` "secret" or "document" and
``token_units`` (the unit of every token), the windows never mix two units
(:func:`privlab.llm.tokenization.unit_windows`), units are Poisson-sampled at rate
``batch_size / U`` and each sampled unit gives one window (McMahan et al. 2018), so the guarantee is
(epsilon, delta)-DP for adding or removing a whole unit (all copies of a secret). With
``lora_r > 0`` only peft LoRA adapters are trained (:func:`privlab.dp.lora.add_lora`).

With DP, :func:`privlab.llm.adapt.prepare_for_dp` first adapts a Hugging Face model (``LlamaRMSNorm``
becomes ``torch.nn.RMSNorm``, which privlab.dp clips; layers it cannot clip are frozen; see
``docs/llm.md``). Rotary position embeddings (no parameters) and the SiLU-gated MLP (three Linear
layers) need nothing.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from privlab.errors import InvalidParameterError
from privlab.llm.adapt import Adaptation, prepare_for_dp
from privlab.llm.config import FineTuneConfig
from privlab.llm.models import LanguageModel
from privlab.llm.tokenization import PAD, token_windows, unit_windows


@dataclass(frozen=True, eq=False)
class FineTuneResult:
    """The trained model, its privacy cost (None without DP) and what was adapted for DP."""

    lm: LanguageModel
    epsilon: float | None
    delta: float | None
    noise_multiplier: float | None
    sample_rate: float
    steps: int
    seconds: float
    losses: tuple[float, ...]
    frozen: tuple[str, ...] = field(default=())
    untied: tuple[str, ...] = field(default=())
    converted: tuple[str, ...] = field(default=())
    trainable_parameters: int = 0
    step_seconds: tuple[float, ...] = field(default=())
    privacy_unit: str = "example"
    num_units: int = 0
    step_batch_sizes: tuple[int, ...] = field(default=())  # realised windows per step (Poisson with DP)


def _lora_targets(model: nn.Module, given: tuple[str, ...]) -> list[str]:
    if given:
        return list(given)
    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    for cand in (("q_proj", "v_proj"), ("qkv", "proj")):
        if set(cand) <= names:
            return list(cand)
    return sorted(names - {"head", "lm_head"})


def lm_loss(module: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of windows ``batch`` (B, T + 1).

    Windows padded with ``PAD`` (unit windows): ``mean_i (1/T) sum_t m_it NLL_it`` with ``m_it = 0`` on
    padded targets, so the loss is still the mean over windows of a per-window loss (what DP-SGD's
    ``loss_reduction="mean"`` assumes); pads at the end of a window are never attended to by the
    real tokens before them (causal attention).
    """
    pad = batch == PAD
    if not bool(pad.any()):
        logits = module(batch[:, :-1])  # (B, T, V)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
    logits = module(batch[:, :-1].masked_fill(pad[:, :-1], 0))
    targets = batch[:, 1:]
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=PAD, reduction="none")
    return nll.view(targets.shape).sum(1).div(targets.shape[1]).mean()


def fine_tune(
    lm: LanguageModel,
    train_ids: torch.Tensor,
    cfg: FineTuneConfig,
    progress: bool = False,
    token_units: torch.Tensor | None = None,
) -> FineTuneResult:
    """Train ``lm`` for ``cfg.steps`` steps: in place, or with ``cfg.lora_r > 0`` a LoRA-wrapped deep copy
    of its module (``lm`` itself, its weights and ``requires_grad`` flags, stay unchanged; the copy
    costs one more model in memory). The trained model is ``result.lm``.

    ``token_units`` (the unit id of every token of ``train_ids``, ``NO_UNIT`` for none) is needed by,
    and only used by, DP with ``cfg.dp.privacy_unit`` other than "example".
    """
    torch.manual_seed(cfg.seed)
    unit = "example" if cfg.dp is None else cfg.dp.privacy_unit
    length = min(cfg.seq_len, lm.block_size)
    window_units: torch.Tensor | None = None
    if unit == "example":
        windows = token_windows(train_ids, length)
    elif token_units is None:
        raise InvalidParameterError(
            f"The 'token_units' parameter of fine_tune must label every token with its unit for "
            f"privacy_unit={unit!r} (one id per token of 'train_ids'). Got None instead."
        )
    else:
        windows, window_units = unit_windows(train_ids, token_units, length)
    dataset = TensorDataset(windows)
    n_units = len(dataset) if window_units is None else int(window_units.unique().numel())
    module = lm.module
    adapted = Adaptation()
    if cfg.lora_r > 0:
        from privlab.dp.lora import add_lora

        targets = _lora_targets(module, cfg.lora_targets)
        try:  # peft changes the module it wraps: wrap a copy, so that the caller's model stays as it was
            module = add_lora(copy.deepcopy(module), targets, r=cfg.lora_r, alpha=cfg.lora_alpha)
        except InvalidParameterError as exc:
            raise InvalidParameterError(
                f"The LoRA targets of fine_tune ({targets!r}, from FineTuneConfig.lora_targets={cfg.lora_targets!r}) "
                f"do not fit {lm.name}: {exc}"
            ) from None
    if cfg.dp is not None:
        adapted = prepare_for_dp(module, cfg.dp.clipping)
        lost = [name for name in adapted.frozen if "lora_" in name]
        if lost:  # peft's Embedding adapters (ParameterDicts) have no per-example rule: nothing would train
            raise InvalidParameterError(
                f"The 'lora_targets' parameter of FineTuneConfig must name layers whose LoRA adapters DP-SGD can "
                f"clip (Linear layers, e.g. ('q_proj', 'v_proj') or ('qkv', 'proj')). Got {cfg.lora_targets!r}, "
                f"which puts adapters privlab.dp has no per-example gradient rule for (they would be frozen) on: "
                f"{', '.join(lost)}."
            )
    params = [p for p in module.parameters() if p.requires_grad]
    opt: Any = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    loader: Any = DataLoader(dataset, batch_size=min(cfg.batch_size, n_units), shuffle=True, generator=gen)
    q = loader.batch_size / len(dataset)
    eps = delta = sigma = None
    pt = None
    if cfg.dp is not None:
        from privlab.dp import make_private

        delta = cfg.dp.delta if cfg.dp.delta is not None else 1.0 / (10 * n_units)
        pt = make_private(
            module,
            opt,
            loader,
            target_epsilon=cfg.dp.target_epsilon,
            delta=delta,
            steps=cfg.steps,
            max_grad_norm=cfg.dp.max_grad_norm,
            clipping=cfg.dp.clipping,
            accountant=cfg.dp.accountant,
            seed=cfg.seed,
            unit_ids=window_units,
            privacy_unit=None if window_units is None else unit,
            per_unit=cfg.dp.per_unit,
        )
        opt, loader, sigma, q = pt.optimizer, pt.data_loader, pt.noise_multiplier, pt.sample_rate
    module.train()
    losses: list[float] = []
    step_times: list[float] = []
    step_sizes: list[int] = []
    start = time.perf_counter()
    bar = tqdm(total=cfg.steps, desc=f"fine-tune {lm.name}", disable=not progress, leave=False)
    while len(losses) < cfg.steps:
        for (batch,) in loader:
            t0 = time.perf_counter()
            opt.zero_grad()
            if batch.shape[0] == 0:  # an empty Poisson batch: the DP step still adds noise
                opt.step()
                losses.append(float("nan"))
            else:
                loss = lm_loss(module, batch)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
            step_times.append(time.perf_counter() - t0)
            step_sizes.append(int(batch.shape[0]))
            bar.update(1)
            if len(losses) >= cfg.steps:
                break
    bar.close()
    seconds = time.perf_counter() - start
    module.eval()
    if pt is not None:
        pt.optimizer.detach()
        eps = pt.epsilon()
    out = LanguageModel(module, lm.tokenizer, lm.name + ("+lora" if cfg.lora_r else ""), lm.block_size)
    trainable = sum(p.numel() for p in params)
    return FineTuneResult(
        out,
        eps,
        delta,
        sigma,
        q,
        len(losses),
        seconds,
        tuple(losses),
        tuple(adapted.frozen),
        tuple(adapted.untied),
        tuple(adapted.converted),
        trainable,
        tuple(step_times),
        unit,
        n_units,
        tuple(step_sizes),
    )


@torch.no_grad()
def perplexity(lm: LanguageModel, ids: torch.Tensor, seq_len: int = 64, max_windows: int = 256) -> float:
    """``exp(mean next-token NLL)`` over up to ``max_windows`` non-overlapping windows of ``ids``."""
    w = token_windows(ids, min(seq_len, lm.block_size))[:max_windows]
    lm.module.eval()
    total = sum(float(lm_loss(lm.module, w[s : s + 64])) * len(w[s : s + 64]) for s in range(0, len(w), 64))
    return float(torch.tensor(total / len(w)).exp())
