"""Regression tests for privacy bugs of the DP-SGD engine (each one refused loudly or fixed)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from privlab.accounting import PrivacyLedger
from privlab.data import ArrayDataset
from privlab.dp import DPOptimizer, make_private, per_sample_gradients
from privlab.dp.checkpoint import load_checkpoint, save_checkpoint
from privlab.errors import (
    InvalidParameterError,
    NonFiniteGradientError,
    PrivacyViolationError,
    UnsupportedModuleError,
)
from privlab.models import GPT
from privlab.models.gpt import GPTConfig

MODES = ["flat", "per_layer", "ghost"]


def dp_optimizer(model: nn.Module, clipping: str = "flat", C: float = 1.0, **kw) -> DPOptimizer:
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    return DPOptimizer(
        opt, model, noise_multiplier=0.0, max_grad_norm=C, expected_batch_size=1, sample_rate=0.1,
        ledger=PrivacyLedger(1e-5), clipping=clipping, loss_reduction="sum", **kw,
    )


def grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


# -- 1. layers called without a per-example batch dimension --------------------------------------
class LearnedQueries(nn.Module):
    """Learned queries (1, Q, d) through a Linear, broadcast over the batch afterwards."""

    def __init__(self, d: int = 6, Q: int = 3) -> None:
        super().__init__()
        self.q = nn.Parameter(torch.randn(1, Q, d))
        self.proj = nn.Linear(d, d)
        self.inp = nn.Linear(4, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (B, T, 4)
        k = self.inp(x)  # (B, T, d)
        q = self.proj(self.q)  # (1, Q, d): no batch dimension
        return torch.softmax(q @ k.transpose(1, 2), -1) @ k  # (B, Q, d)


class HFPositions(nn.Module):
    def __init__(self, V: int = 20, T: int = 5, d: int = 6) -> None:
        super().__init__()
        self.tok, self.pos, self.head = nn.Embedding(V, d), nn.Embedding(T, d), nn.Linear(d, V)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.tok(x) + self.pos(torch.arange(x.shape[1])[None]))  # (1, T, d) positions


@pytest.mark.parametrize("clipping", MODES)
def test_layer_without_batch_dimension_is_refused(clipping: str) -> None:
    torch.manual_seed(0)
    model = LearnedQueries()
    dp = dp_optimizer(model, clipping)
    with pytest.raises(UnsupportedModuleError, match=r"'proj'.*no per-example batch dimension.*expand"):
        model(torch.randn(4, 7, 4)).sum().backward()
        dp.step()


@pytest.mark.parametrize("clipping", MODES)
def test_hf_style_positions_are_refused(clipping: str) -> None:
    torch.manual_seed(0)
    model = HFPositions()
    dp = dp_optimizer(model, clipping)
    with pytest.raises(UnsupportedModuleError, match=r"'pos'.*pos_emb\(pos.unsqueeze\(0\).expand\(B, -1\)\)"):
        model(torch.randint(0, 20, (6, 5))).sum().backward()
        dp.step()


@pytest.mark.parametrize("clipping", MODES)
def test_gpt_with_1d_positions_still_matches_reference(ref, clipping: str) -> None:
    torch.manual_seed(1)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8))
    x, y = torch.randint(0, 11, (5, 8)), torch.randint(0, 11, (5, 8))

    def loss_fn(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(out.reshape(-1, 11), t.reshape(-1), reduction="sum")

    want = ref.clipped_sum(ref.per_sample_grads(model, loss_fn, x, y), 0.5, "flat" if clipping != "per_layer" else "pl")
    dp = dp_optimizer(model, clipping, C=0.5)
    loss_fn(model(x), y).backward()
    dp.step()
    ref.assert_close_dicts(grads(model), want, atol=1e-4, rtol=1e-3)


# -- 2. parameters frozen at wrap time and unfrozen later ---------------------------------------
def test_parameter_unfrozen_after_wrapping_is_refused() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2))
    model[2].requires_grad_(False)
    dp = dp_optimizer(model)
    model[2].requires_grad_(True)
    w = model[2].weight.detach().clone()
    dp.zero_grad()
    model(torch.randn(8, 5)).sum().backward()
    with pytest.raises(PrivacyViolationError, match=r"'2.weight'.*raw, unclipped.*make_private"):
        dp.step()
    assert torch.equal(w, model[2].weight)
    # frozen again: training goes on
    model[2].requires_grad_(False)
    dp.zero_grad()
    model(torch.randn(8, 5)).sum().backward()
    dp.step()


@pytest.mark.parametrize("clipping", ["flat", "per_layer", "ghost"])
def test_bias_unfrozen_after_wrapping_a_captured_layer_is_refused(clipping: str) -> None:
    """The layer is captured (its weight trains), so autograd gives the bias no .grad: the capture's
    per-example bias gradient must not be dropped silently (nor fail with a bare KeyError)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2))
    model[2].bias.requires_grad_(False)
    dp = dp_optimizer(model, clipping)
    model[2].bias.requires_grad_(True)
    dp.zero_grad()
    model(torch.randn(8, 5)).sum().backward()
    with pytest.raises(PrivacyViolationError, match=r"'2.bias' requires a gradient but is not privatised"):
        dp.step()
    model[2].bias.requires_grad_(False)  # frozen again: training goes on
    dp.zero_grad()
    model(torch.randn(8, 5)).sum().backward()
    dp.step()


# -- 3. tied weights ------------------------------------------------------------------------------
class Tied(nn.Module):
    def __init__(self, V: int = 13, d: int = 6, bias: bool = False) -> None:
        super().__init__()
        self.emb, self.mid = nn.Embedding(V, d), nn.Linear(d, d)
        self.head = nn.Linear(d, V, bias=bias)
        self.head.weight = self.emb.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.mid(self.emb(x))))


@pytest.mark.parametrize(
    ("clipping", "T", "bias"),
    [("flat", 7, False), ("per_layer", 7, False), ("ghost", 7, False), ("ghost", 20, True), ("ghost", 1, False)],
)
def test_tied_weights_match_reference_clipped_sum(ref, clipping: str, T: int, bias: bool) -> None:
    # ghost: T=7 < V=13 (embedding on the ghost route anyway), T=20 >= V (it would be materialised untied),
    # T=1 (the Linear's single-position shortcut); the joint norm must equal the summed gradient's norm
    torch.manual_seed(0)
    model = Tied(bias=bias)
    with torch.no_grad():
        model.emb.weight.mul_(5)
    x, y = torch.randint(0, 13, (4, T)), torch.randint(0, 13, (4, T))

    def loss_fn(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(out.reshape(-1, 13), t.reshape(-1), reduction="sum")

    want = ref.clipped_sum(ref.per_sample_grads(model, loss_fn, x, y), 1.0, "pl" if clipping == "per_layer" else "flat")
    dp = dp_optimizer(model, clipping)
    loss_fn(model(x), y).backward()
    dp.step()
    ref.assert_close_dicts(grads(model), want, atol=1e-5, rtol=1e-4)


def test_ghost_tied_clipping_when_every_example_is_clipped(ref) -> None:
    # C far below every norm: the result scales each example by C / ||joint grad||, so a norm that left out
    # the cross term between the embedding's and the head's parts would show
    torch.manual_seed(1)
    model = Tied()
    x, y = torch.randint(0, 13, (4, 7)), torch.randint(0, 13, (4, 7))

    def loss_fn(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(out.reshape(-1, 13), t.reshape(-1), reduction="sum")

    per = ref.per_sample_grads(model, loss_fn, x, y)
    joint = per["emb.weight"].flatten(1).norm(dim=1)
    dp = dp_optimizer(model, "ghost", C=1e-3)
    loss_fn(model(x), y).backward()
    dp.step()
    got = grads(model)["emb.weight"]
    want = ref.clipped_sum(per, 1e-3, "flat")["emb.weight"]
    torch.testing.assert_close(got, want, atol=1e-8, rtol=1e-4)
    assert joint.min() > 1e-3  # every example clipped: the result is sensitive to each example's norm


def test_ghost_refuses_a_shared_parameter_that_is_not_a_tied_matmul_weight() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 4), nn.LayerNorm(4))
    model[3].weight = model[1].weight
    with pytest.raises(UnsupportedModuleError, match=r"'1.weight'.*clipping='flat'"):
        dp_optimizer(model, "ghost")


# -- 4. eval() mode -------------------------------------------------------------------------------
@pytest.mark.parametrize("clipping", MODES)
def test_eval_mode_still_captures(ref, clipping: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Dropout(0.5), nn.Tanh(), nn.LayerNorm(8), nn.Linear(8, 3))
    model.eval()
    x, y = torch.randn(6, 5), torch.randn(6, 3)

    def loss_fn(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return ((out - t) ** 2).sum()

    want = ref.clipped_sum(ref.per_sample_grads(model, loss_fn, x, y), 0.3, "flat" if clipping != "per_layer" else "pl")
    dp = dp_optimizer(model, clipping, C=0.3)
    loss_fn(model(x), y).backward()
    dp.step()
    ref.assert_close_dicts(grads(model), want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_torch_func_per_sample_gradients_work_on_a_wrapped_model(mode: str) -> None:
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.LayerNorm(4), nn.Linear(4, 2))
    dp_optimizer(model)
    getattr(model, mode)()
    out = per_sample_gradients(model, lambda o, t: ((o - t) ** 2).sum(), torch.randn(3, 5), torch.randn(3, 2))
    assert out["0.weight"].shape == (3, 4, 5)


# -- 5. several backward passes before step() -------------------------------------------------
@pytest.mark.parametrize("clipping", MODES)
def test_second_backward_before_step_is_refused(clipping: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 2))
    dp = dp_optimizer(model, clipping)
    model(torch.randn(8, 5)).sum().backward()
    with pytest.raises(PrivacyViolationError, match="physical_batch_size"):
        model(torch.randn(8, 5)).sum().backward()
    # zero_grad() clears the capture, so the loop works again
    dp.zero_grad()
    model(torch.randn(8, 5)).sum().backward()
    dp.step()
    model(torch.randn(8, 5)).sum().backward()
    dp.step()


def test_zero_grad_discards_the_capture() -> None:
    model = nn.Linear(3, 2)
    dp = dp_optimizer(model)
    model(torch.randn(4, 3)).sum().backward()
    dp.zero_grad()
    dp.step()  # nothing captured any more: the update is the (zero) noise only
    assert torch.count_nonzero(model.weight.grad) == 0


# -- 6. resuming training continues the ledger ----------------------------------------------
def test_resume_continues_the_ledger(tmp_path) -> None:
    ds = ArrayDataset(torch.randn(64, 5), torch.randint(0, 3, (64,)))

    def train(model: nn.Module, **kw):
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        pt = make_private(model, opt, DataLoader(ds, batch_size=16), noise_multiplier=1.0, seed=0, **kw)
        for x, y in pt.data_loader:
            pt.optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            pt.optimizer.step()
        return pt

    model = nn.Sequential(nn.Linear(5, 3))
    pt = train(model)
    steps, eps = pt.accountant.steps, pt.epsilon()
    save_checkpoint(tmp_path, model, pt.accountant.ledger)
    model2 = nn.Sequential(nn.Linear(5, 3))
    ck = load_checkpoint(tmp_path, model2)
    pt2 = train(model2, ledger=ck.ledger)
    assert pt2.accountant.ledger is ck.ledger
    assert pt2.accountant.steps == 2 * steps
    assert pt2.epsilon() > eps
    with pytest.raises(InvalidParameterError, match="'ledger'"):
        train(nn.Sequential(nn.Linear(5, 3)), ledger=PrivacyLedger(1e-6))
    with pytest.raises(InvalidParameterError, match="'ledger'"):
        train(nn.Sequential(nn.Linear(5, 3)), ledger=PrivacyLedger(1e-5, "rdp"))


# -- a NaN or inf example: refused before the step is recorded or applied --------------------------
@pytest.mark.parametrize("clipping", MODES)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_example_is_refused_and_a_finite_batch_steps(clipping: str, bad: float) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2))
    opt = DPOptimizer(
        torch.optim.SGD(model.parameters(), lr=0.5), model, noise_multiplier=1.0, max_grad_norm=1.0,
        expected_batch_size=8, sample_rate=0.1, ledger=PrivacyLedger(1e-5), clipping=clipping,
    )
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    x_bad = x.clone()
    x_bad[3, 1] = bad  # one example of eight
    before = [p.detach().clone() for p in model.parameters()]
    nn.functional.cross_entropy(model(x_bad), y).backward()
    with pytest.raises(NonFiniteGradientError, match="not recorded nor applied"):
        opt.step()
    assert opt.ledger.steps == 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    # control: the same optimizer steps on the finite batch, and the weights stay finite
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    assert opt.ledger.steps == 1
    after = list(model.parameters())
    assert all(torch.isfinite(p).all() and not torch.equal(a, p) for a, p in zip(before, after, strict=True))
