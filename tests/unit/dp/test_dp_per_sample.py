"""Per-example gradients (torch.func and hook paths) and ghost norms against a one-backward-per-example loop."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader

from privlab.data import ArrayDataset
from privlab.dp import ghost, make_private, per_sample_gradients
from privlab.models import GPT, SmallCNN
from privlab.models.gpt import GPTConfig

pytestmark = pytest.mark.filterwarnings("ignore:There is a performance drop")


def sum_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (out * y).sum()


def hook_paths(model: nn.Module, x: torch.Tensor, y: torch.Tensor, C: float = 0.3):
    """(materialised per-sample grads, ghost squared norms, ghost clipped sum) from one captured backward."""
    ds = ArrayDataset(x, y)
    pt = make_private(
        model,
        torch.optim.SGD(model.parameters(), lr=0.0),
        DataLoader(ds, batch_size=max(len(x), 1)),
        noise_multiplier=0.0,
        clipping="ghost",
        max_grad_norm=C,
        loss_reduction="sum",
    )
    opt = pt.optimizer
    sum_loss(model(x), y).backward()
    per_sample = opt.per_sample_grads()
    sq = sum(v for m, calls, kept in opt.capture.items() for v in ghost.norms(m, calls, kept)[0].values())
    clipped = opt._clipped_sum()
    opt.detach()
    model.zero_grad(set_to_none=True)
    return per_sample, sq, clipped


def clipped_sum_of_mode(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mode: str, C: float = 0.3):
    pt = make_private(
        model,
        torch.optim.SGD(model.parameters(), lr=0.0),
        DataLoader(ArrayDataset(x, y), batch_size=1),
        noise_multiplier=0.0,
        clipping=mode,
        max_grad_norm=C,
        loss_reduction="sum",
    )
    sum_loss(model(x), y).backward()
    clipped = pt.optimizer._clipped_sum()
    pt.optimizer.detach()
    model.zero_grad(set_to_none=True)
    return clipped


def check_all_paths(ref, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    expected = ref.per_sample_grads(model, sum_loss, x, y)
    ref.assert_close_dicts(per_sample_gradients(model, sum_loss, x, y), expected)
    per_sample, sq, clipped = hook_paths(model, x, y)
    ref.assert_close_dicts(per_sample, expected)
    ref_sq = sum(v.flatten(1).pow(2).sum(1) for v in expected.values())
    torch.testing.assert_close(sq, ref_sq, atol=1e-4, rtol=1e-4)
    ref.assert_close_dicts(clipped, ref.clipped_sum(expected, 0.3))
    ref.assert_close_dicts(clipped_sum_of_mode(model, x, y, "flat"), ref.clipped_sum(expected, 0.3))
    ref.assert_close_dicts(clipped_sum_of_mode(model, x, y, "per_layer"), ref.clipped_sum(expected, 0.3, "per_layer"))


@settings(max_examples=8, deadline=None)
@given(B=st.integers(1, 4), T=st.integers(0, 5), d=st.integers(1, 6), p=st.integers(1, 6), bias=st.booleans())
def test_linear_random_shapes(ref, B: int, T: int, d: int, p: int, bias: bool) -> None:
    torch.manual_seed(B * 100 + T * 10 + d)
    shape = (B, d) if T == 0 else (B, T, d)  # 2-D and sequence inputs
    model = nn.Sequential(nn.Linear(d, p, bias=bias))
    x = torch.randn(shape)
    check_all_paths(ref, model, x, torch.randn(*shape[:-1], p))


@settings(max_examples=6, deadline=None)
@given(
    B=st.integers(1, 3),
    cin=st.integers(1, 3),
    cout=st.integers(1, 4),
    k=st.integers(1, 3),
    stride=st.integers(1, 2),
    pad=st.integers(0, 2),
    dil=st.integers(1, 2),
    hw=st.integers(5, 8),
)
def test_conv2d_random_shapes(
    ref, B: int, cin: int, cout: int, k: int, stride: int, pad: int, dil: int, hw: int
) -> None:
    torch.manual_seed(hw + 7 * k)
    conv = nn.Conv2d(cin, cout, k, stride=stride, padding=pad, dilation=dil)
    x = torch.randn(B, cin, hw, hw + 1)
    y = torch.randn_like(conv(x))
    check_all_paths(ref, nn.Sequential(conv), x, y)


@settings(max_examples=6, deadline=None)
@given(B=st.integers(1, 4), T=st.integers(1, 6), V=st.integers(2, 7), d=st.integers(1, 5), padded=st.booleans())
def test_embedding_random_shapes(ref, B: int, T: int, V: int, d: int, padded: bool) -> None:
    torch.manual_seed(B + T + V)
    model = nn.Sequential(nn.Embedding(V, d, padding_idx=0 if padded else None))
    x = torch.randint(0, V, (B, T))  # repeated ids within an example exercise the cross terms
    check_all_paths(ref, model, x, torch.randn(B, T, d))


@settings(max_examples=6, deadline=None)
@given(
    B=st.integers(1, 4), T=st.integers(0, 4), d=st.integers(2, 6), affine=st.booleans(), bias=st.booleans(),
    two_dims=st.booleans(),
)
def test_layernorm_random_shapes(ref, B: int, T: int, d: int, affine: bool, bias: bool, two_dims: bool) -> None:
    # The captured LayerNorm (xhat from the forward's statistics, no non-private gain/bias gradients)
    # also feeds the preceding Linear's per-example gradients through its input gradient.
    torch.manual_seed(B + T + d)
    shape = (B, d) if T == 0 else (B, T, d)
    normalized = (T, d) if two_dims and T > 0 else (d,)
    model = nn.Sequential(nn.Linear(d, d), nn.LayerNorm(normalized, elementwise_affine=affine, bias=bias))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)  # non-trivial gamma/beta
    check_all_paths(ref, model, torch.randn(shape), torch.randn(shape))


@settings(max_examples=6, deadline=None)
@given(B=st.integers(1, 4), T=st.integers(0, 4), d=st.integers(2, 6), eps=st.sampled_from([None, 1e-5, 0.5]))
def test_rmsnorm_random_shapes(ref, B: int, T: int, d: int, eps: float | None) -> None:
    torch.manual_seed(B + T + d)
    shape = (B, d) if T == 0 else (B, T, d)
    model = nn.Sequential(nn.Linear(d, d), nn.RMSNorm(d, eps=eps))
    with torch.no_grad():
        model[1].weight.add_(torch.randn(d) * 0.3)  # non-trivial gain
    check_all_paths(ref, model, torch.randn(shape), torch.randn(shape))


@settings(max_examples=6, deadline=None)
@given(B=st.integers(1, 3), G=st.sampled_from([1, 2, 4]), per=st.integers(1, 3), hw=st.integers(2, 4))
def test_groupnorm_random_shapes(ref, B: int, G: int, per: int, hw: int) -> None:
    torch.manual_seed(B + G + hw)
    C = G * per
    model = nn.Sequential(nn.Conv2d(2, C, 1), nn.GroupNorm(G, C))
    with torch.no_grad():
        model[1].weight.add_(torch.randn(C))
    x = torch.randn(B, 2, hw, hw)
    check_all_paths(ref, model, x, torch.randn(B, C, hw, hw))


@pytest.mark.parametrize(
    ("T", "d", "p"), [(2, 6, 6), (5, 2, 3), (1, 4, 4)], ids=["ghost-gram", "kept-per-example", "T=1"]
)
def test_linear_each_ghost_route(ref, T: int, d: int, p: int) -> None:
    torch.manual_seed(T)
    model = nn.Sequential(nn.Linear(d, p))
    x = torch.randn(4, T, d)
    check_all_paths(ref, model, x, torch.randn(4, T, p))


@pytest.mark.parametrize("V", [3, 50], ids=["kept", "gram"])
def test_embedding_each_ghost_route(ref, V: int) -> None:
    torch.manual_seed(V)
    model = nn.Sequential(nn.Embedding(V, 4))
    check_all_paths(ref, model, torch.randint(0, 3, (4, 6)), torch.randn(4, 6, 4))


def test_reused_layer_sums_its_calls(ref) -> None:
    torch.manual_seed(0)
    lin = nn.Linear(4, 4)

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = lin

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(torch.tanh(self.lin(x)))

    check_all_paths(ref, Twice(), torch.randn(3, 4), torch.randn(3, 4))


def test_small_cnn_with_groupnorm_and_inplace_relu(ref) -> None:
    torch.manual_seed(1)
    model = SmallCNN(groups=4, activation="relu")
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = True
    x = torch.randn(3, 1, 28, 28)
    check_all_paths(ref, model, x, torch.randn(3, 10))


@pytest.mark.parametrize("B", [3, 8])  # B == T exercises the broadcast positional-embedding rule
def test_small_gpt(ref, B: int) -> None:
    torch.manual_seed(2)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8))
    x = torch.randint(0, 11, (B, 8))
    check_all_paths(ref, model, x, torch.randn(B, 8, 11))


def test_empty_batch_gives_empty_per_sample() -> None:
    model = nn.Linear(3, 2)
    out = per_sample_gradients(model, sum_loss, torch.zeros(0, 3), torch.zeros(0, 2))
    assert out["weight"].shape == (0, 2, 3)


@pytest.mark.parametrize("cin", [1, 3])
@pytest.mark.parametrize(
    ("kernel", "stride", "pad", "dil"),
    [((3, 2), (1, 1), (0, 0), (1, 1)), ((8, 8), (2, 2), (3, 3), (1, 1)), ((3, 4), (2, 3), (1, 2), (2, 1))],
)
def test_conv_weight_per_example_both_routes(cin, kernel, stride, pad, dil):
    # Single-channel inputs take the forward-convolution route, others the grouped backward: both
    # must equal one autograd backward per example, on non-square kernels, strides and paddings.
    from privlab.dp.layers import conv_weight_per_example

    torch.manual_seed(cin + kernel[0])
    conv = nn.Conv2d(cin, 4, kernel, stride=stride, padding=pad, dilation=dil)
    x = torch.randn(3, cin, 17, 15)
    g = torch.randn_like(conv(x))
    got = conv_weight_per_example(conv, x, g)
    for i in range(3):
        (want,) = torch.autograd.grad((conv(x[i : i + 1]) * g[i : i + 1]).sum(), [conv.weight])
        torch.testing.assert_close(got[i], want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cin", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_conv_weight_per_example_empty_batch(cin, dtype):
    # B = 0 (an empty Poisson batch): no groups to convolve, an empty (0, *W.shape) result.
    from privlab.dp.layers import conv_weight_per_example

    conv = nn.Conv2d(cin, 4, (3, 2), padding=(1, 0)).to(dtype)
    x = torch.zeros(0, cin, 9, 8, dtype=dtype)
    got = conv_weight_per_example(conv, x, torch.zeros_like(conv(x)))
    assert got.shape == (0, *conv.weight.shape)
    assert got.dtype == dtype


def check_per_layer_against_reference(ref, model: nn.Module, x: torch.Tensor, y: torch.Tensor, reduction: str) -> None:
    """``per_layer`` clipping during the backward pass of a ``reduction`` loss equals clipping the
    reference per-example gradients (each example's own loss), C = 0.3."""
    pt = make_private(
        model, torch.optim.SGD(model.parameters(), lr=0.0), DataLoader(ArrayDataset(x, y), batch_size=len(x)),
        noise_multiplier=0.0, clipping="per_layer", max_grad_norm=0.3, loss_reduction=reduction,
    )
    per = (model(x) * y).sum((1, 2))
    (per.mean() if reduction == "mean" else per.sum()).backward()
    clipped = pt.optimizer._clipped_sum()
    pt.optimizer.detach()
    model.zero_grad(set_to_none=True)
    expected = ref.per_sample_grads(model, sum_loss, x, y)
    ref.assert_close_dicts(clipped, ref.clipped_sum(expected, 0.3, "per_layer"))


@pytest.mark.parametrize(
    ("chunk_bytes", "loop_bytes"),
    [(1, 10**9), (10**9, 10**9), (10**9, 0)],  # chunks of 2 (last one partial) / one chunk / one example at a time
)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_per_layer_chunked_linear_sum(ref, monkeypatch, chunk_bytes: int, loop_bytes: int, reduction: str) -> None:
    """Per-layer clipping of Linear weights in chunks or one example at a time (never the whole
    (B, p, d) tensor) equals clipping the reference per-example gradients, with a mean loss's batch
    factor too."""
    from privlab.dp import layers

    monkeypatch.setattr(layers, "CHUNK_BYTES", chunk_bytes)
    monkeypatch.setattr(layers, "LOOP_BYTES", loop_bytes)
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3, bias=False))
    check_per_layer_against_reference(ref, model, torch.randn(7, 6, 5), torch.randn(7, 6, 3), reduction)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_per_layer_embedding_by_ghost_norms(ref, reduction: str) -> None:
    """Per-layer clipping of an Embedding with more rows than positions (norms by the ghost identity,
    sum by one index_add) equals clipping the reference per-example gradients, repeated ids, padding
    and a mean loss's batch factor included."""
    torch.manual_seed(5)
    model = nn.Sequential(nn.Embedding(30, 4, padding_idx=1), nn.Tanh(), nn.Linear(4, 3))
    x = torch.randint(0, 6, (7, 5))  # few distinct ids: repeats within an example
    x[0] = 1  # an example of padding only: zero gradient
    check_per_layer_against_reference(ref, model, x, torch.randn(7, 5, 3), reduction)
