"""Normalisation layers under DP-SGD: the captured LayerNorm's statistics and the mean-loss scale.

The DP gradient with no noise and a clipping norm no example reaches must equal the non-private
gradient of the same mean loss, for every layer of the model: a regression test for per-example
bias gradients that aliased the output gradient of a LayerNorm / GroupNorm on 2-D inputs, so that
scaling them by the batch size also scaled the input gradient flowing into the layers before.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from privlab.dp import layers, make_private


def _norm_model(kind: str, seq: bool) -> nn.Module:
    norm = {"layer": nn.LayerNorm(8), "group": nn.GroupNorm(2, 8), "rms": nn.RMSNorm(8)}[kind]
    return nn.Sequential(nn.Linear(6, 8), norm, nn.Tanh(), nn.Linear(8, 3))


@pytest.mark.parametrize("clipping", ["flat", "per_layer", "ghost"])
@pytest.mark.parametrize(  # GroupNorm takes (B, C, *): on (B, T, C) its channel would not be the features
    ("kind", "seq"), [("layer", False), ("layer", True), ("group", False), ("rms", False), ("rms", True)]
)
def test_unclipped_noiseless_gradient_is_the_nonprivate_one(clipping: str, kind: str, seq: bool) -> None:
    torch.manual_seed(0)
    model = _norm_model(kind, seq)
    reference = _norm_model(kind, seq)
    reference.load_state_dict(model.state_dict())
    with torch.no_grad():
        model[1].weight.add_(torch.randn(8) * 0.3)  # non-trivial gain
        reference[1].weight.copy_(model[1].weight)
    x = torch.randn(16, 5, 6) if seq else torch.randn(16, 6)
    y = torch.randn(16, 5, 3) if seq else torch.randn(16, 3)
    nn.functional.mse_loss(reference(x), y).backward()
    pt = make_private(
        model, torch.optim.SGD(model.parameters(), lr=0.0), DataLoader(TensorDataset(x, y), batch_size=16),
        noise_multiplier=0.0, max_grad_norm=1e6, clipping=clipping, seed=0,
    )
    pt.optimizer.zero_grad()
    nn.functional.mse_loss(pt.model(x), y).backward()
    pt.optimizer.step()
    for (name, p), r in zip(model.named_parameters(), reference.parameters(), strict=True):
        assert r.grad is not None
        torch.testing.assert_close(p.grad, r.grad, rtol=1e-5, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")


def _layer_norm_reference(ln: nn.LayerNorm, x: torch.Tensor, g: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-example gain / bias gradients by one autograd backward per example, in float64."""
    ref = nn.LayerNorm(ln.normalized_shape, bias=ln.bias is not None).double()
    ref.load_state_dict(ln.state_dict())
    out: dict[str, list[torch.Tensor]] = {}
    for xi, gi in zip(x.double(), g.double(), strict=True):
        ref.zero_grad()
        (ref(xi.unsqueeze(0)) * gi.unsqueeze(0)).sum().backward()
        for name, p in ref.named_parameters():
            out.setdefault(name, []).append(p.grad.clone())
    return {k: torch.stack(v) for k, v in out.items()}


@pytest.mark.parametrize(
    ("shape", "normalized", "bias"),
    [((4, 6, 16), (16,), True), ((4, 16), (16,), True), ((3, 2, 5, 6), (5, 6), False), ((3, 4, 7), (4, 7), True)],
)
@pytest.mark.parametrize("shift", [0.0, 50.0])
def test_layer_norm_from_forward_stats_matches_one_backward_per_example(shape, normalized, bias, shift: float) -> None:
    """The captured LayerNorm's route (``xhat`` from the forward's mean and rstd) and the hook route
    (``xhat`` recomputed from ``x``) both give each example's own gain and bias gradients."""
    torch.manual_seed(len(shape) + int(shift))
    ln = nn.LayerNorm(normalized, bias=bias)
    with torch.no_grad():
        for p in ln.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    x = torch.randn(shape) * 0.7 + shift
    g = torch.randn(shape)
    _, mean, rstd = torch.native_layer_norm(x, normalized, ln.weight, ln.bias, ln.eps)
    expected = _layer_norm_reference(ln, x, g)
    for stats in ((mean, rstd), None):
        got = layers.per_example_grads(ln, [(x, g)], 3.0, stats=stats)
        assert set(got) == set(expected)
        for k, v in got.items():
            assert v.shape == expected[k].shape
            torch.testing.assert_close(v.double(), 3.0 * expected[k], rtol=1e-4, atol=1e-4)


def test_output_gradient_is_never_modified() -> None:
    """Negative control for the aliasing bug: the per-example rules must not scale ``g`` in place."""
    for module, x in ((nn.LayerNorm(8), torch.randn(5, 8)), (nn.GroupNorm(2, 8), torch.randn(5, 8))):
        g = torch.randn(5, 8)
        before = g.clone()
        layers.per_example_grads(module, [(x, g)], 5.0)
        torch.testing.assert_close(g, before, rtol=0, atol=0)

