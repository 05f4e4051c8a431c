"""DP-SGD optimizer: clip per-example gradients, add Gaussian noise, step, record in the ledger.

One logical step (Abadi et al. 2016, Alg. 1), the mechanism of :mod:`privlab.dp.mechanism`::

    g~ = (sum_i clip_C(g_i) + N(0, sigma^2 C^2 I)) / (q N  if loss_reduction == "mean" else 1)
    theta <- inner_optimizer.step(theta, g~)

``q N`` is the *expected* batch size: dividing by the realised Poisson batch size would make the
normaliser data dependent. With virtual batches the clipped sums of every physical chunk are added up
and noise is drawn once, when the last chunk of the logical batch is stepped. With ``data_parallel``
(a ``DistributedDataParallel`` model, :mod:`privlab.dp.distributed`) the ranks' clipped sums are then
added up in one all-reduce, each rank having noised its slice of the coordinates, so every
coordinate is noised once per logical batch over all ranks.

Clipping modes: ``flat`` and ``per_layer`` materialise per-example gradients from captured
activations (one ``(B, *shape)`` tensor per parameter); ``ghost`` computes per-example norms with the
ghost-norm identity and the clipped sum with one matmul per layer (book-keeping, Bu et al. 2023), so
no per-example gradient is materialised.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import torch
from torch import nn

from privlab.accounting import PrivacyLedger
from privlab.accounting.fixed_size import FixedSizeLedger
from privlab.dp import allreduce, ghost, layers, mechanism
from privlab.dp.distributed import DataParallel
from privlab.dp.hooks import GradCapture
from privlab.errors import (
    InvalidParameterError,
    NonFiniteGradientError,
    PrivacyViolationError,
    PrivlabError,
    UnsupportedModuleError,
)


class DPOptimizer:
    """Wraps a ``torch.optim.Optimizer``; the user's loop (``zero_grad``, ``backward``, ``step``) is unchanged.

    Auditing only (the accountant is *not* told): ``add_noise_enabled = False`` skips the noise and
    ``clipping_enabled = False`` skips the clipping, to inject faults that an audit must detect.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        model: nn.Module,
        *,
        noise_multiplier: float,
        max_grad_norm: float,
        expected_batch_size: float,
        sample_rate: float,
        ledger: PrivacyLedger | FixedSizeLedger,
        clipping: str = "flat",
        loss_reduction: str = "mean",
        generator: torch.Generator | None = None,
        secure_rng: bool = False,
        data_parallel: DataParallel | None = None,
    ) -> None:
        self.original_optimizer = optimizer
        self._model = model
        self.noise_multiplier = float(noise_multiplier)
        self.max_grad_norm = float(max_grad_norm)
        self.expected_batch_size = float(expected_batch_size)
        self.sample_rate = float(sample_rate)
        self.ledger = ledger
        self.clipping = clipping
        self.loss_reduction = loss_reduction
        self.generator = generator
        self.secure_rng = secure_rng
        self.data_parallel = data_parallel
        self.add_noise_enabled = True
        self.clipping_enabled = True
        self.capture = GradCapture(
            model,
            loss_reduction,
            ghost.keep_per_example if clipping == "ghost" else lambda *_: True,
            self._clip_layer if clipping == "per_layer" else None,
        )
        self.params: dict[str, nn.Parameter] = {n: p for n, p in model.named_parameters() if p.requires_grad}
        # per_layer: each of the K trainable tensors is clipped to C / sqrt(K), so the total is <= C.
        self._layer_threshold = self.max_grad_norm / math.sqrt(max(len(self.params), 1))
        self._owner = {id(p): n for n, p in self.params.items()}
        owners: dict[int, list[str]] = {}
        for lname, layer in self.capture.layers.items():
            for p in layer.parameters(recurse=False):
                owners.setdefault(id(p), []).append(lname)
        self.capture.no_early_reduce = {n for names in owners.values() if len(names) > 1 for n in names}
        shared = {self._owner[pid]: names for pid, names in owners.items() if len(names) > 1 and pid in self._owner}
        # ghost: a weight tied across Linear / Conv2d / Embedding layers gets one joint norm
        # (ghost.tied_squared_norms); its layers keep their captures instead of materialising.
        self._tied: dict[int, str] = {}  # id(layer) -> the global name of its tied weight
        if clipping == "ghost" and shared:
            for pname, names in shared.items():
                mods = [self.capture.layers[n] for n in names]
                ok = all(
                    isinstance(m, nn.Linear | nn.Conv2d | nn.Embedding) and m.weight is self.params[pname]
                    for m in mods
                )
                if not ok:
                    self.capture.remove()
                    raise UnsupportedModuleError(
                        f"clipping='ghost' supports a parameter shared by several layers only as the 'weight' of "
                        f"Linear, Conv2d or Embedding layers (tied embeddings); '{pname}' is shared by "
                        f"{', '.join(repr(n) for n in names)}. Use clipping='flat' or clipping='per_layer', or "
                        "untie the weights."
                    )
                self._tied.update({id(m): pname for m in mods})
            tied_ids = set(self._tied)
            self.capture.materialise = lambda m, a, g: id(m) not in tied_ids and ghost.keep_per_example(m, a, g)
        self._summed: dict[str, torch.Tensor] = {}
        self._closes_logical_batch = True
        self._joined_failed = False  # data-parallel: this logical batch failed here after its collectives
        self._groups: torch.Tensor | None = None
        # data-parallel: the ranks' noisy sum; per-layer clipping offers each layer's sum during backward
        self.allreduce: allreduce.NoisySum | None = None
        if data_parallel is not None:
            cap = data_parallel.bucket_bytes if clipping == "per_layer" else math.inf
            self.allreduce = allreduce.NoisySum(dict(self.params), data_parallel, cap)

    # -- torch.optim.Optimizer surface -------------------------------------------------------
    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.original_optimizer.param_groups

    @property
    def state(self) -> Any:
        return self.original_optimizer.state

    def state_dict(self) -> dict[str, Any]:
        return self.original_optimizer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.original_optimizer.load_state_dict(state)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear ``.grad`` and the captured pass (the clipped sum of earlier chunks of a logical batch is kept)."""
        self.original_optimizer.zero_grad(set_to_none=set_to_none)
        self.capture.clear()

    # -- DP-SGD ----------------------------------------------------------------------------------
    def begin_logical_batch(self) -> None:
        """Called by the private data loader before the first chunk of each logical batch.

        Drops what an earlier logical batch left unreleased: in a complete loop there is nothing;
        after breaking out of an epoch in the middle of a logical batch (some chunks stepped, its
        last not), releasing those clipped sums with the next logical batch would let an example
        sampled in both count twice in one release (sensitivity 2C where the accountant assumes C).
        The unfinished batch was never released, so dropping it costs no privacy. Captured
        activations of a backward pass that was never stepped are dropped too.
        """
        self._summed = {}
        self._joined_failed = False
        self.capture.clear()
        if self.allreduce is not None:
            self.allreduce.reset()

    def signal_chunk(self, closes_logical_batch: bool) -> None:
        """Called by the private data loader: does the next ``step()`` end a logical batch?"""
        self._closes_logical_batch = closes_logical_batch

    def set_groups(self, groups: torch.Tensor | None) -> None:
        """Clip by group from the next ``step()`` on: ``groups[i]`` is the unit of example i of the batch.

        The gradients of a group's examples are summed and the sum is clipped to C (unit-level DP with
        all of a sampled unit's examples, McMahan et al. 2018), so a group adds at most C to the step.
        Flat clipping only: per-layer clipping clips each layer per example as the backward pass runs,
        and ghost norms are per example. Called by the private data loader of a unit sampler with
        ``per_unit="all"``; ``None`` goes back to per-example clipping.
        """
        if groups is not None and self.clipping != "flat":
            raise InvalidParameterError(
                f"The 'groups' parameter of DPOptimizer.set_groups needs clipping='flat' (the clipped sum "
                f"of a unit's examples is computed from materialised per-example gradients). Got "
                f"clipping={self.clipping!r} instead."
            )
        self._groups = groups

    def _local_to_global(self, module: nn.Module, local: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for k, v in local.items():
            p = getattr(module, k)
            if p.requires_grad and id(p) not in self._owner:  # unfrozen after the optimizer was wrapped
                raise self._not_privatised(p, "requires a gradient", "its private gradient would be dropped")
            if p.requires_grad:
                out[self._owner[id(p)]] = v
        return out

    def per_sample_grads(self) -> dict[str, torch.Tensor]:
        """Materialised per-example grads ``{param name: (B, *shape)}`` of the captured pass."""
        out: dict[str, torch.Tensor] = {}
        for module, calls, kept in self.capture.items():
            local = dict(kept)
            if calls:
                for k, v in layers.per_example_grads(module, calls).items():
                    local[k] = local[k] + v if k in local else v
            for k, v in self._local_to_global(module, local).items():
                out[k] = out[k] + v if k in out else v  # a parameter shared by several layers
        return out

    def _clip_layer(
        self, module: nn.Module, act: torch.Tensor, g: torch.Tensor, scale: float, stats: layers.NormStats | None
    ) -> dict[str, torch.Tensor]:
        """Per-layer clipping of one call of a layer, summed over examples: ``{local name: sum}``.

        A Linear layer goes through :func:`layers.clipped_linear_sum` (its weight never materialised
        whole). An Embedding with more rows than positions per example takes its norms from the ghost
        identity and its sum from one ``index_add`` of the scaled output gradients
        (:func:`ghost.norms`, :func:`ghost.clipped_sum`), instead of building the (B, V, d) tensor.
        Everything else is materialised and clipped tensor by tensor.
        """
        c = self._layer_threshold if self.clipping_enabled else math.inf
        if type(module) is nn.Linear and module.weight.requires_grad:
            sums = layers.clipped_linear_sum(module, act, g, scale, c)
        elif type(module) is nn.Embedding and module.weight.requires_grad and not ghost.keep_per_example(
            module, act, g
        ):
            sq, plan = ghost.norms(module, [(act, g)], {})  # the weight's (B,) squared norms, before scale
            factors = mechanism.clip_factors(sq["weight"].sqrt_().mul_(abs(scale)), c)
            sums = ghost.clipped_sum(plan, factors.mul_(scale))
        else:
            sums = self._clip_tensors(layers.per_example_grads(module, [(act, g)], scale, stats=stats))
        return self._offer(module, sums)

    def _offer(self, module: nn.Module, sums: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Data-parallel, last chunk of a logical batch: hand a layer's final sums to the all-reduce at once.

        Returns what is left for ``step()`` (nothing if handed over). The layer's sums are final here
        (it is called once per pass and shares no parameter): its earlier chunks' sums are added in.
        """
        if self.allreduce is None or not self._closes_logical_batch or self._joined_failed:
            return sums
        if any(p.requires_grad and id(p) not in self._owner for p in module.parameters(recurse=False)):
            return sums  # unfrozen after wrapping: step() refuses it, and tells the other ranks
        found = self._local_to_global(module, sums)
        final = {k: v if k not in self._summed else self._summed.pop(k) + v for k, v in found.items()}
        self.allreduce.offer(final, self._noise())
        return {}

    def _noise(self) -> allreduce.Noise | None:
        std = self.noise_multiplier * self.max_grad_norm if self.add_noise_enabled else 0.0
        return allreduce.gaussian(std, self.generator, self.secure_rng)

    def _clip_tensors(self, per_example: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each tensor clipped to ``C / sqrt(K)`` (K = all trainable tensors of the model), summed."""
        c = self._layer_threshold if self.clipping_enabled else math.inf
        return {k: mechanism.clipped_sum({k: v}, c, "flat")[k] for k, v in per_example.items()}

    def _clipped_sum(self) -> dict[str, torch.Tensor]:
        C = self.effective_max_grad_norm
        out: dict[str, torch.Tensor] = {}
        if self.clipping == "per_layer":
            for module, sums in self.capture.reduced_items():
                out.update(self._local_to_global(module, sums))
            # Layers used more than once per pass, or sharing a parameter: clip the summed per-example grads.
            for k, v in self._clip_tensors(self.per_sample_grads()).items():
                out[k] = out[k] + v if k in out else v
            return out
        if self.clipping == "ghost":
            sq: torch.Tensor | float = 0.0
            plans = []
            batch: int | None = None
            tied_caps: dict[str, list[Any]] = {}
            for module, calls, kept in self.capture.items():
                tied = self._tied.get(id(module))
                layer_sq, plan = ghost.norms(module, calls, kept, weight_norm=tied is None)
                plans.append(plan)
                if tied is not None and plan.cap is not None:
                    tied_caps.setdefault(tied, []).append(plan.cap)
                for k, v in layer_sq.items():
                    batch = v.shape[0] if batch is None and v.dim() == 1 else batch
                    if v.dim() != 1 or v.shape[0] != batch:  # never broadcast one layer's norms onto others
                        raise UnsupportedModuleError(
                            f"Ghost clipping got per-example squared norms of shape {tuple(v.shape)} for "
                            f"'{k}' of a {type(module).__name__}, expected ({batch},): the layer was not "
                            "called with a per-example batch dimension, so its gradient cannot be split "
                            "into examples. Call it on a tensor whose leading dimension is the batch."
                        )
                    sq = sq + v
            for caps in tied_caps.values():
                sq = sq + ghost.tied_squared_norms(caps)
            if not isinstance(sq, torch.Tensor):
                return {}
            f = mechanism.clip_factors(sq.sqrt(), C)  # ghost's Gram norms are clamped at 0
            for plan in plans:
                for k, v in self._local_to_global(plan.module, ghost.clipped_sum(plan, f)).items():
                    out[k] = out[k] + v if k in out else v  # a tied weight: its layers' parts add up
            return out
        per_sample = self.per_sample_grads()
        sizes = {k: v.shape[0] for k, v in per_sample.items()}
        if len(set(sizes.values())) > 1:
            raise UnsupportedModuleError(
                f"Per-example gradients of different batch sizes {sizes}: some layer was not called with a "
                "per-example batch dimension. Call every trainable layer on a tensor whose leading "
                "dimension is the batch."
            )
        if self._groups is not None and per_sample:
            b = next(iter(per_sample.values())).shape[0]
            if self._groups.shape != (b,):
                raise InvalidParameterError(
                    f"The 'groups' parameter of DPOptimizer.set_groups must give the unit of each of the batch's "
                    f"{b} examples. Got shape {tuple(self._groups.shape)} instead."
                )
            _, inv = torch.unique(self._groups, return_inverse=True)
            g = int(inv.max()) + 1 if b else 0
            per_sample = {
                k: torch.zeros((g, *v.shape[1:]), dtype=v.dtype, device=v.device).index_add_(0, inv.to(v.device), v)
                for k, v in per_sample.items()
            }
        return mechanism.clipped_sum(per_sample, C, "flat")

    @property
    def effective_max_grad_norm(self) -> float:
        """The clipping norm the mechanism applies: ``max_grad_norm``, or inf with ``clipping_enabled = False``."""
        return self.max_grad_norm if self.clipping_enabled else math.inf

    @property
    def closes_logical_batch(self) -> bool:
        """Whether the next ``step()`` ends a logical batch (then it adds noise, steps and records).

        Always True without virtual batches; with ``physical_batch_size``, True only for the last
        chunk of each logical batch (a loop counts steps, or schedules the learning rate, on these).
        """
        return self._closes_logical_batch

    def add_per_example_gradients(self, per_example: dict[str, torch.Tensor]) -> None:
        """Add extra examples' gradients ``{param name: (m, *shape)}`` to the pending logical batch.

        They are clipped like the data's (flat, or per layer with ``clipping="per_layer"``; ghost
        clipping is flat clipping) and summed with them, so they get the same noise at the next
        closing ``step()``. The white-box audits use this for their canary gradients, so the canaries
        travel the optimizer's own clipping, noise, scaling and accounting.
        """
        unknown = sorted(set(per_example) - set(self.params))
        if unknown:
            raise InvalidParameterError(
                "The 'per_example' parameter of DPOptimizer.add_per_example_gradients must name trainable "
                f"parameters of the model ({sorted(self.params)}). Got {unknown} instead."
            )
        sent = sorted(k for k in per_example if self.allreduce is not None and self.allreduce.offered(k))
        if sent:
            raise InvalidParameterError(
                "The 'per_example' parameter of DPOptimizer.add_per_example_gradients names parameters whose sums "
                f"this data-parallel step has already sent to the other ranks during the backward pass ({sent}). "
                "Add extra gradients before the backward pass of the logical batch's last chunk."
            )
        if self.clipping == "per_layer":
            sums = self._clip_tensors(per_example)
        else:
            sums = mechanism.clipped_sum(per_example, self.effective_max_grad_norm, "flat")
        for k, v in sums.items():
            self._summed[k] = self._summed[k] + v if k in self._summed else v

    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Accumulate this chunk's clipped sum; at the end of a logical batch add noise, step and record."""
        loss = None
        if self._joined_failed:  # the rest of a logical batch that failed on this rank: nothing to release
            self.capture.clear()
            self._joined_failed = not self._closes_logical_batch
            return None
        try:
            if closure is not None:
                with torch.enable_grad():
                    loss = closure()
            self._check_foreign_grads()
            for k, v in self._clipped_sum().items():
                self._summed[k] = self._summed[k] + v if k in self._summed else v
        except Exception:
            if self.allreduce is not None and not self._joined_failed:  # the others must not wait: tell them
                self._summed = {}
                self.capture.clear()
                with suppress(PrivlabError):  # the flagged all-reduce raises on every rank; this one re-raises its own
                    self.allreduce.finish({}, None, failed=True)
                # this rank has issued the logical batch's collectives: its later chunks must not
                self._joined_failed = not self._closes_logical_batch
            raise
        self.capture.clear()
        if not self._closes_logical_batch:
            return loss
        std = self.noise_multiplier * self.max_grad_norm if self.add_noise_enabled else 0.0
        scale = 1.0 / self.expected_batch_size if self.loss_reduction == "mean" else 1.0
        summed = {
            n: torch.zeros_like(p) if n not in self._summed else self._summed[n].to(p.dtype)
            for n, p in self.params.items()
        }
        self._summed = {}  # released (or, if the ranks' all-reduce fails, dropped) with this step
        if self.allreduce is not None:  # every rank's clipped sums added up, each coordinate noised once: fresh
            summed = self.allreduce.finish(summed, self._noise())
        elif std > 0:  # fresh tensors, scaled in place below
            summed = mechanism.add_noise(summed, std, self.generator, self.secure_rng)
        self._check_finite(summed)
        fresh = std > 0 or self.allreduce is not None
        for name, p in self.params.items():
            p.grad = summed[name].mul_(scale) if fresh else summed[name] * scale
        # recorded before it is applied: a ledger that refuses the step leaves the weights untouched
        self.ledger.record(self.noise_multiplier, self.sample_rate)
        self.original_optimizer.step()
        self._closes_logical_batch = True
        return loss

    def _check_finite(self, summed: dict[str, torch.Tensor]) -> None:
        """Refuse a logical step whose noisy sum is NaN or infinite, before it is recorded or applied.

        One example with a NaN loss or gradient makes its norm NaN, hence its clip factor and the whole
        sum (NaN * 0 is NaN); without this check the weights would silently become NaN. After a
        data-parallel all-reduce every rank holds the same sum, so every rank refuses the same step.
        """
        finite = torch.stack([torch.isfinite(v).all() for v in summed.values()]) if summed else torch.ones(0)
        if bool(finite.all()):  # one host sync per logical step
            return
        bad = [n for n, ok in zip(summed, finite.tolist(), strict=True) if not ok]
        self.capture.clear()
        raise NonFiniteGradientError(
            f"DP-SGD step {self.ledger.steps + 1} got a noisy gradient sum that is NaN or infinite in "
            f"{bad[:3]}{' and others' if len(bad) > 3 else ''}: an example of this logical batch has a loss or "
            "gradient that is not finite (NaN or inf in the inputs, a log of 0 in the loss), or the weights "
            "diverged (a learning rate too large). The step was not recorded nor applied. Note that this "
            "error depends on the batch's data and is not covered by the privacy guarantee: keep it private."
        )

    def _check_foreign_grads(self) -> None:
        """Refuse to step a parameter of the wrapped optimizer that is not privatised but has a gradient.

        Such a parameter (e.g. frozen when the optimizer was wrapped and unfrozen later) would be updated
        by the wrapped optimizer with autograd's raw, unclipped, un-noised gradient.
        """
        private = {id(p) for p in self.params.values()}
        for group in self.original_optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None and id(p) not in private:
                    raise self._not_privatised(
                        p, "has a gradient", "the wrapped optimizer would update it with the raw, unclipped, "
                        "un-noised gradient", " and set its .grad to None"
                    )

    def _not_privatised(self, p: torch.Tensor, what: str, why: str, fix: str = "") -> PrivacyViolationError:
        """The error for a parameter that trains but was not trainable (or not in the model) at wrap time."""
        names = {id(q): n for n, q in self._model.named_parameters(remove_duplicate=False)}
        name = names.get(id(p), f"of shape {tuple(p.shape)} (not in the model)")
        self.capture.clear()
        return PrivacyViolationError(
            f"Parameter '{name}' {what} but is not privatised by DP-SGD (it was frozen, or not in the model, when "
            f"the optimizer was wrapped): {why}. Unfreeze it before calling make_private (or wrap again after "
            f"unfreezing), or freeze it again (requires_grad_(False)){fix}."
        )

    def detach(self) -> None:
        """Remove the capture hooks from the model."""
        self.capture.remove()
