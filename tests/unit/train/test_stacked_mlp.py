"""The hand-written stacked-MLP kernel: which models it takes, and its gradients equal autograd's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torch.nn.utils.parametrize as parametrize
from torch import nn

from privlab.data import membership_mask
from privlab.errors import InvalidParameterError
from privlab.models import MLP, SmallCNN
from privlab.train import TrainConfig, stacked_mlp, train_ensemble, vmapped
from privlab.train.sampling import init_model
from privlab.train.stacked_mlp import fold_first_bias, mlp_grads, mlp_plan, transposed_layout, unfold_first_bias
from privlab.train.vmapped import train_chunk


class _Wide(MLP):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * 2  # not a plain chain any more


class _DoubledSequential(nn.Sequential):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * 2


class _DoubledLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * 2


class _Double(nn.Module):
    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * 2


def _hooked() -> nn.Module:
    m = nn.Sequential(nn.Linear(6, 3))
    m[0].register_forward_hook(lambda mod, inp, out: out * 2)
    return m


def _parametrized() -> nn.Module:
    lin = nn.Linear(6, 3)
    parametrize.register_parametrization(lin, "weight", _Double())
    return nn.Sequential(lin)


class _NotSequentialNet(MLP):
    def __init__(self) -> None:
        super().__init__(in_features=6, hidden=(), num_classes=3)
        self.net = nn.ModuleDict({"0": nn.Linear(6, 3)})  # type: ignore[assignment]


@pytest.mark.parametrize(
    ("make", "applies"),
    [
        (lambda: MLP(in_features=6, hidden=(5, 4), num_classes=3), True),
        (lambda: MLP(in_features=6, hidden=(), num_classes=3), True),
        (lambda: MLP(in_features=6, hidden=(5,), num_classes=3, activation="tanh"), True),
        (lambda: nn.Sequential(nn.Flatten(), nn.Linear(6, 5, bias=False), nn.ReLU(), nn.Linear(5, 3)), True),
        (lambda: MLP(in_features=6, hidden=(5,), num_classes=3, activation="gelu"), False),
        (lambda: _Wide(in_features=6, hidden=(5,), num_classes=3), False),
        (lambda: nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.Linear(5, 3)), False),
        (lambda: nn.Sequential(nn.ReLU(), nn.Linear(6, 3)), False),
        (lambda: nn.Sequential(nn.Linear(6, 3), nn.ReLU()), False),
        (lambda: nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Tanh(), nn.Linear(5, 3)), False),
        (lambda: nn.Sequential(nn.Linear(6, 5), nn.Flatten(), nn.Linear(5, 3)), False),
        (lambda: SmallCNN(), False),
        # forward differs from the chain the plan would compute
        (lambda: _DoubledSequential(nn.Linear(6, 3)), False),
        (lambda: nn.Sequential(_DoubledLinear(6, 3)), False),
        (_hooked, False),
        (_parametrized, False),
        (_NotSequentialNet, False),
        (lambda: nn.Sequential(nn.Linear(6, 5), nn.Dropout(0.5), nn.Linear(5, 3)), False),
        (lambda: nn.Sequential(nn.Linear(6, 5), nn.ReLU(inplace=True), nn.Linear(5, 3)), True),
    ],
)
def test_plan_takes_only_plain_dense_chains(make, applies):
    assert (mlp_plan(make()) is not None) is applies


def test_plan_of_a_reused_activation_instance():
    # One ReLU object after both hidden layers: Sequential.forward calls it twice, although
    # named_children() lists it once; the plan must apply it after both.
    torch.manual_seed(0)
    act = nn.ReLU()
    m = nn.Sequential(nn.Linear(7, 6), act, nn.Linear(6, 5), act, nn.Linear(5, 4))
    plan = mlp_plan(m)
    assert plan is not None
    assert [layer.activation for layer in plan] == ["relu", "relu", None]
    params = {n: p.detach()[None] for n, p in m.named_parameters()}
    x, y = torch.randn(1, 5, 7), torch.tensor([0, 1, 2, 3, 0])
    out = mlp_grads(plan, params, x, y, {n: torch.empty_like(v) for n, v in params.items()})
    want = torch.autograd.grad(F.cross_entropy(m(x[0]), y), list(m.parameters()))
    for (name, _), g in zip(m.named_parameters(), want, strict=True):
        torch.testing.assert_close(out[name][0], g, rtol=1e-5, atol=1e-6)


def test_plan_needs_flatten_for_multidim_inputs():
    # Without a leading Flatten, Linear acts on the last dimension of a (B, C, D) input only.
    assert mlp_plan(nn.Sequential(nn.Linear(4, 3)), input_ndim=2) is not None
    assert mlp_plan(nn.Sequential(nn.Linear(4, 3)), input_ndim=3) is None
    assert mlp_plan(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), input_ndim=3) is not None


@pytest.mark.parametrize(
    "make",
    [
        lambda: MLP(in_features=7, hidden=(6, 5), num_classes=4),
        lambda: MLP(in_features=7, hidden=(6,), num_classes=4, activation="tanh"),
        lambda: MLP(in_features=7, hidden=(), num_classes=4),
        lambda: nn.Sequential(nn.Linear(7, 6, bias=False), nn.Tanh(), nn.Linear(6, 4, bias=False)),
    ],
    ids=["relu-2-hidden", "tanh", "linear", "no-bias"],
)
@pytest.mark.parametrize("beta", [0.0, 0.9])
@pytest.mark.parametrize("narrow", [0, 5, 10**6], ids=["all-wide", "mixed", "all-narrow"])
def test_grads_equal_autograd(monkeypatch, make, beta, narrow):
    # narrow: layers with fewer outputs run as z^T = W a^T (stacked_mlp.NARROW); 5 splits these models.
    monkeypatch.setattr(stacked_mlp, "NARROW", narrow)
    K, B = 3, 5
    gen = torch.Generator().manual_seed(0)
    models = [make() for _ in range(K)]
    plan = mlp_plan(models[0])
    assert plan is not None
    params = {
        n: torch.stack([dict(m.named_parameters())[n].detach() for m in models])
        for n, _ in models[0].named_parameters()
    }
    x = torch.randn(K, B, 7, generator=gen)
    y = torch.randint(0, 4, (K * B,), generator=gen)
    old = {n: torch.randn(p.shape, generator=gen) for n, p in params.items()}
    out = mlp_grads(plan, params, x, y, {n: v.clone() for n, v in old.items()}, beta=beta)
    for k, m in enumerate(models):
        loss = F.cross_entropy(m(x[k]), y[k * B : (k + 1) * B])  # the plain loop's mean loss
        grads = torch.autograd.grad(loss, list(m.parameters()))
        for (name, _), g in zip(m.named_parameters(), grads, strict=True):
            torch.testing.assert_close(out[name][k], beta * old[name][k] + g, rtol=1e-5, atol=1e-6)


def test_grads_detect_a_wrong_label():
    # Negative control: the comparison above is sensitive to one changed label.
    m = MLP(in_features=7, hidden=(6,), num_classes=4)
    plan = mlp_plan(m)
    params = {n: p.detach()[None] for n, p in m.named_parameters()}
    x, y = torch.randn(1, 5, 7), torch.tensor([0, 1, 2, 3, 0])
    out = mlp_grads(plan, params, x, y, {n: torch.empty_like(v) for n, v in params.items()})
    wrong = torch.autograd.grad(F.cross_entropy(m(x[0]), torch.tensor([0, 1, 2, 3, 1])), list(m.parameters()))
    assert not torch.allclose(out["net.3.weight"][0], wrong[2], atol=1e-4)


CONFIGS = [
    TrainConfig(epochs=3, batch_size=8, lr=0.1, optimizer="sgd", momentum=0.9, weight_decay=1e-3, seed=3),
    TrainConfig(epochs=3, batch_size=8, lr=0.01, optimizer="adam", weight_decay=1e-3, seed=4),
    TrainConfig(epochs=2.5, batch_size=5, lr=0.2, optimizer="sgd", momentum=0.0, seed=5),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=["sgd-momentum-wd", "adam", "plain-sgd"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("first", [12, 20], ids=["narrow-first", "folded-first-bias"])
def test_mlp_kernel_equals_vmap_kernel(tiny_data, cfg, activation, first):
    # first: a first layer of >= NARROW outputs gets its bias folded into the weight (fold_first_bias).
    def factory() -> MLP:
        return MLP(in_features=16, hidden=(first, 6), num_classes=4, activation=activation)

    mask = membership_mask(4, len(tiny_data), seed=1)  # unequal IN sets: the tail steps freeze models
    assert len(set(mask.sum(1).tolist())) > 1
    seeds = [11, 12, 13, 14]
    fast = train_chunk(factory, tiny_data.x, tiny_data.y, mask, seeds, cfg, kernel="mlp")
    slow = train_chunk(factory, tiny_data.x, tiny_data.y, mask, seeds, cfg, kernel="vmap")
    for name in slow:
        torch.testing.assert_close(fast[name], slow[name], rtol=1e-5, atol=1e-5)


def test_kernel_validation(tiny_data):
    mask = np.ones((2, len(tiny_data)), dtype=bool)
    cfg = TrainConfig(epochs=1, batch_size=8)
    with pytest.raises(InvalidParameterError, match=r"'kernel'.*'mlp'"):
        train_chunk(lambda: SmallCNN(), torch.zeros(96, 1, 28, 28), tiny_data.y, mask, [0, 1], cfg, kernel="mlp")
    with pytest.raises(InvalidParameterError, match="kernel"):
        train_ensemble(lambda: MLP(in_features=16, hidden=(4,), num_classes=4), tiny_data, mask, cfg, kernel="fast")


def test_labels_the_kernel_cannot_one_hot(tiny_data):
    # cross_entropy refuses out-of-range and int32 labels and takes soft (probability) labels; the
    # one-hot of the hand-written kernel would silently write into a neighbouring example's row.
    mask = np.ones((2, len(tiny_data)), dtype=bool)
    cfg = TrainConfig(epochs=1, batch_size=8)

    def factory() -> MLP:
        return MLP(in_features=16, hidden=(4,), num_classes=3)  # tiny_data has labels 0..3

    for y in (tiny_data.y, tiny_data.y.int()):
        with pytest.raises(InvalidParameterError, match="labels"):
            train_chunk(factory, tiny_data.x, y, mask, [0, 1], cfg, kernel="mlp")
    with pytest.raises((IndexError, RuntimeError), match="out of bounds"):
        train_chunk(factory, tiny_data.x, tiny_data.y, mask, [0, 1], cfg, kernel="auto")
    soft = torch.softmax(torch.randn(len(tiny_data), 3, generator=torch.Generator().manual_seed(0)), 1)
    auto = train_chunk(factory, tiny_data.x, soft, mask, [0, 1], cfg, kernel="auto")
    ref = train_chunk(factory, tiny_data.x, soft, mask, [0, 1], cfg, kernel="vmap")
    for name in ref:
        torch.testing.assert_close(auto[name], ref[name])


def test_multidim_inputs_without_flatten_are_not_flattened(tiny_data):
    # The reference (and the vmap kernel) apply Linear to the last dimension and then fail on the
    # (B, 1, 4, C) logits; the hand-written kernel must not silently train on flattened rows instead.
    mask = np.ones((2, len(tiny_data)), dtype=bool)
    cfg = TrainConfig(epochs=1, batch_size=8)
    x = tiny_data.x.reshape(len(tiny_data), 4, 4)
    with pytest.raises(InvalidParameterError, match="Flatten"):
        train_chunk(lambda: nn.Sequential(nn.Linear(4, 4)), x, tiny_data.y, mask, [0, 1], cfg, kernel="mlp")
    with pytest.raises(RuntimeError, match="target size"):
        train_chunk(lambda: nn.Sequential(nn.Linear(4, 4)), x, tiny_data.y, mask, [0, 1], cfg, kernel="auto")


def test_transposed_layout_keeps_narrow_layers():
    # A layer with fewer than NARROW outputs (the classifier head) stays (K, out, in).
    model = MLP(in_features=7, hidden=(20,), num_classes=4)
    plan = mlp_plan(model)
    params = {n: torch.randn(2, *p.shape) for n, p in model.named_parameters()}
    moved = transposed_layout(plan, params)
    assert moved[plan[0].weight].transpose(1, 2).is_contiguous() and not moved[plan[0].weight].is_contiguous()
    assert moved[plan[1].weight] is params[plan[1].weight]


@pytest.mark.parametrize("beta", [0.0, 0.9])
def test_transposed_layout_gives_the_same_gradients(monkeypatch, beta):
    # Weights stored (K, in, out) (train_chunk's layout): same values, other strides, same gradients
    # (and the same momentum accumulation) as the contiguous (K, out, in) layout.
    monkeypatch.setattr(stacked_mlp, "NARROW", 0)  # every layer moves
    torch.manual_seed(0)
    K, B = 3, 5
    models = [MLP(in_features=7, hidden=(6,), num_classes=4) for _ in range(K)]
    plan = mlp_plan(models[0])
    assert plan is not None
    named = [dict(m.named_parameters()) for m in models]
    params = {n: torch.stack([d[n].detach() for d in named]) for n in named[0]}
    moved = transposed_layout(plan, params)
    for layer in plan:
        w, v = params[layer.weight], moved[layer.weight]
        assert torch.equal(w, v) and not v.is_contiguous() and v.transpose(1, 2).is_contiguous()
        assert moved[layer.bias] is params[layer.bias]  # only weights move
    x, y = torch.randn(K, B, 7), torch.randint(0, 4, (K * B,))
    start = {n: torch.randn_like(v) for n, v in params.items()}
    plain = mlp_grads(plan, params, x, y, {n: v.clone() for n, v in start.items()}, beta=beta)
    out_t = {n: v.clone().copy_(start[n]) for n, v in transposed_layout(plan, start).items()}
    trans = mlp_grads(plan, moved, x, y, out_t, beta=beta)
    for layer in plan:
        assert trans[layer.weight].transpose(1, 2).is_contiguous()  # written in place, layout kept
    for n in params:
        torch.testing.assert_close(trans[n], plain[n], rtol=1e-5, atol=1e-6)
    # Negative control: a wrong momentum factor is caught by the same comparison.
    fresh = {n: v.clone().copy_(start[n]) for n, v in transposed_layout(plan, start).items()}
    other = mlp_grads(plan, moved, x, y, fresh, beta=beta + 0.05)
    assert not torch.allclose(other[plan[0].weight], plain[plan[0].weight], rtol=1e-5, atol=1e-6)


def test_train_chunk_returns_contiguous_weights(tiny_data):
    mask = membership_mask(2, len(tiny_data), seed=0)
    cfg = TrainConfig(epochs=1, batch_size=8, lr=0.1, momentum=0.9)
    state = train_chunk(
        lambda: MLP(in_features=tiny_data.x[0].numel(), hidden=(6,), num_classes=int(tiny_data.y.max()) + 1),
        tiny_data.x,
        tiny_data.y,
        mask,
        [1, 2],
        cfg,
        kernel="mlp",
    )
    assert all(v.is_contiguous() for v in state.values())


def _stacked(model_factory, k: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    models = [model_factory() for _ in range(k)]
    return {
        n: torch.stack([dict(m.named_parameters())[n].detach() for m in models])
        for n, _ in models[0].named_parameters()
    }


@pytest.mark.parametrize("beta", [0.0, 0.9])
def test_folded_first_bias_gives_the_same_gradients(beta):
    # [a, 1] [W, b]^T: the folded plan with a column of ones gives the unfolded weight and bias gradients.
    K, B = 3, 5
    model = MLP(in_features=7, hidden=(20,), num_classes=4)
    plan = mlp_plan(model)
    assert plan is not None
    params = transposed_layout(plan, _stacked(lambda: MLP(in_features=7, hidden=(20,), num_classes=4), K))
    names = list(params)
    got = fold_first_bias(plan, params)
    assert got is not None
    fplan, folded = got
    w = folded[plan[0].weight]
    assert fplan[0].bias is None and fplan[0].in_features == 8 and w.shape == (K, 20, 8)
    assert w.transpose(1, 2).is_contiguous()  # stored (K, in + 1, out), as transposed_layout stores it
    assert plan[0].bias not in folded
    back = unfold_first_bias(plan, folded, names)
    assert list(back) == names and all(torch.equal(back[n], params[n]) for n in names)
    x, y = torch.randn(K, B, 7), torch.randint(0, 4, (K * B,))
    start = {n: torch.randn_like(v) for n, v in params.items()}
    plain = mlp_grads(plan, params, x, y, {n: v.clone() for n, v in start.items()}, beta=beta)
    fstart = fold_first_bias(plan, {n: v.clone() for n, v in start.items()})
    assert fstart is not None
    x1 = torch.cat([x, torch.ones(K, B, 1)], 2)
    fgrads = mlp_grads(fplan, folded, x1, y, fstart[1], beta=beta)
    out = unfold_first_bias(plan, fgrads, names)
    for n in names:
        torch.testing.assert_close(out[n], plain[n], rtol=1e-5, atol=1e-6)
    # Negative control: without the column of ones (zeros instead) the bias gradient is only beta * start.
    fzero = fold_first_bias(plan, {n: v.clone() for n, v in start.items()})
    assert fzero is not None
    zero = unfold_first_bias(
        plan, mlp_grads(fplan, folded, torch.cat([x, torch.zeros(K, B, 1)], 2), y, fzero[1], beta=beta), names
    )
    assert not torch.allclose(zero[plan[0].bias], plain[plan[0].bias], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "make",
    [
        lambda: MLP(in_features=7, hidden=(12,), num_classes=4),  # narrow first layer
        lambda: MLP(in_features=7, hidden=(), num_classes=4),  # the head is the first layer
        lambda: nn.Sequential(nn.Linear(7, 20, bias=False), nn.ReLU(), nn.Linear(20, 4)),
    ],
    ids=["narrow", "head-only", "no-bias"],
)
def test_fold_first_bias_does_not_apply(make):
    model = make()
    plan = mlp_plan(model)
    assert plan is not None
    assert fold_first_bias(plan, {n: p.detach()[None] for n, p in model.named_parameters()}) is None


def _frozen_first_bias() -> MLP:
    m = MLP(in_features=16, hidden=(20,), num_classes=4)
    m.net[1].bias.requires_grad_(False)
    return m


@pytest.mark.parametrize(
    ("factory", "cfg", "applied"),
    [
        (lambda: MLP(in_features=16, hidden=(20,), num_classes=4), CONFIGS[0], True),
        (
            lambda: MLP(in_features=16, hidden=(20,), num_classes=4),
            TrainConfig(epochs=1, batch_size=8, max_grad_norm=1.0, noise_multiplier=1.0),
            False,
        ),
        (_frozen_first_bias, CONFIGS[0], False),
    ],
    ids=["plain", "private", "frozen-bias"],
)
def test_train_chunk_folds_only_where_it_may(monkeypatch, tiny_data, factory, cfg, applied):
    # DP-SGD-style noise is drawn per parameter tensor and a frozen bias must stay at its initial value:
    # neither may see one folded tensor. The folded path itself is compared with the vmap kernel above.
    calls: list[bool] = []
    real = vmapped.fold_first_bias

    def spy(plan, params):
        got = real(plan, params)
        calls.append(got is not None)
        return got

    monkeypatch.setattr(vmapped, "fold_first_bias", spy)
    mask = membership_mask(2, len(tiny_data), seed=0)
    state = train_chunk(factory, tiny_data.x, tiny_data.y, mask, [1, 2], cfg, kernel="mlp")
    assert any(calls) is applied
    assert list(state) == [n for n, _ in factory().named_parameters()]
    if factory is _frozen_first_bias:
        init = torch.stack([init_model(factory, s).net[1].bias.detach() for s in (1, 2)])
        assert torch.equal(state["net.1.bias"], init)
