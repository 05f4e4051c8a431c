"""The data's own part of a DP-SGD step, as the white-box auditor reconstructs it (issue 14).

On dense data every parameter coordinate receives real gradient, so a Dirac canary's coordinate moves
with the data as well as with the canary. The auditor sees the iterates theta_t and the data batch
B_t (:class:`BatchRecorder`), recomputes the batch's per-example gradients at theta_t itself
(functorch :func:`~privlab.dp.per_sample_gradients`, not the optimizer's hooks) and forms two
predictions of the batch's contribution to the step (:func:`batch_sums`):

    D_clip = sum_{j in B_t} clip_C(g_j)          (the intended mechanism; per-layer rule if configured)
    D_raw  = sum_{j in B_t} g_j                  (clipping bypassed)

:func:`data_part` keeps, for each step, the one closer (in squared error) to the observed update
``-(theta_{t+1} - theta_t) / s`` on the coordinates *no canary uses*, where the update is the data's
part plus noise only. A correct implementation is matched by ``D_clip`` (the residual there is the noise
alone); an implementation that skips clipping by ``D_raw``, whose data gradients would otherwise drown
the canaries. Both predictions and the choice are functions of the released iterates and the fixed data
set (the batches do not depend on the canaries), so removing either from the canary coordinates keeps
the one-run audit valid (Steinke, Nasr & Jagielski 2023); only its power depends on the choice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn

from privlab.dp import mechanism, per_sample_gradients

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Batch = tuple[torch.Tensor, torch.Tensor]


class BatchRecorder:
    """Iterate ``loader`` unchanged, keeping the chunks ``(x, y)`` yielded since the last :meth:`take`."""

    def __init__(self, loader: Iterable[Batch]) -> None:
        self.loader = loader
        self._chunks: list[Batch] = []

    def __iter__(self) -> Iterator[Batch]:
        for x, y in self.loader:
            self._chunks.append((x, y))
            yield x, y

    def take(self) -> list[Batch]:
        """The chunks since the last call (a logical batch: one, or several with virtual batches)."""
        out, self._chunks = self._chunks, []
        return out


def batch_sums(
    model: nn.Module, loss_fn: LossFn, chunks: list[Batch], max_grad_norm: float, clipping: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(D_clip, D_raw)``, each the flat ``(d,)`` float64 sum over the examples of ``chunks`` at the model's
    current parameters: clipped to ``max_grad_norm`` (``clipping`` "per_layer": each tensor to C / sqrt(K);
    "flat" or "ghost": the flat rule) and unclipped."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    d = sum(p.numel() for p in model.parameters() if p.requires_grad)
    clipped = torch.zeros(d, dtype=torch.float64)
    raw = torch.zeros(d, dtype=torch.float64)
    rule = "per_layer" if clipping == "per_layer" else "flat"
    for x, y in chunks:
        per = per_sample_gradients(model, loss_fn, x, y)
        summed = mechanism.clipped_sum(per, max_grad_norm, rule)
        clipped += torch.cat([summed[n].reshape(-1) for n in names]).to(torch.float64)
        raw += torch.cat([per[n].sum(0).reshape(-1) for n in names]).to(torch.float64)
    return clipped, raw


def data_part(
    update: torch.Tensor, clipped: torch.Tensor, raw: torch.Tensor, others: torch.Tensor
) -> tuple[torch.Tensor, bool]:
    """The prediction (``clipped`` or ``raw``, shape (d,)) closer to ``update`` (d,) on the coordinates
    ``others`` (bool mask, no canary there), and whether it was the unclipped one."""
    err_clip = float(((update - clipped)[others] ** 2).sum())
    err_raw = float(((update - raw)[others] ** 2).sum())
    return (raw, True) if err_raw < err_clip else (clipped, False)


__all__ = ["BatchRecorder", "batch_sums", "data_part"]
