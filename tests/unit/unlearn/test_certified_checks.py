"""Certified removal refuses what its guarantee does not cover: rows of large norm (bound scaled by
max ||x_i||, exact residual checked), an unconverged fit, a model whose feature map it cannot see,
and a seeded noise draw presented as secret (``secure_rng``)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from privlab.data import ArrayDataset
from privlab.errors import InvalidParameterError, UnsupportedModuleError
from privlab.train import TrainConfig
from privlab.unlearn import UnlearnConfig, forget_split, train_certified, unlearn
from privlab.unlearn import certified as C

# l2 = 1, sigma = 30: Guo et al.'s unscaled bound (3.0) fits the budget (6.8) while the true residual (15) does not
CFG = UnlearnConfig(method="certified", l2=1.0, sigma=30.0, epsilon=1.0, delta=1e-4, train=TrainConfig(seed=0))


def _rows(scale: float, n: int = 300, d: int = 4, seed: int = 0) -> ArrayDataset:
    """Noisy linear labels, 5 high-leverage outliers with flipped labels first; max row norm = ``scale``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x[:, 0] + 0.5 * torch.randn(n, generator=g) > 0).long()
    x[:5] = torch.randn(5, d, generator=g) * 3
    y[:5] = 1 - (x[:5, 0] > 0).long()
    return ArrayDataset((x / x.norm(dim=1, keepdim=True).max() * scale).float(), y)


@pytest.mark.parametrize("scale", [1.0, 30.0, 1000.0])
def test_residual_bound_holds_at_any_row_norm(scale: float) -> None:
    data = _rows(scale)
    model = train_certified(nn.Linear(4, 2), data, CFG)
    for rows in ([0], [0, 1, 2, 3, 4]):
        split = forget_split(data, rows)
        d = unlearn(model, split.forget, split.retain, replace(CFG, epsilon=1e12)).details  # never retrain
        assert not d["retrained"]
        assert d["residual_actual"] <= d["residual_bound"]  # the Newton step's exact residual


def test_large_norm_rows_are_retrained_not_certified() -> None:
    data = _rows(1000.0)
    split = forget_split(data, [0])
    res = unlearn(train_certified(nn.Linear(4, 2), data, CFG), split.forget, split.retain, CFG)
    d = res.details
    assert d["retrained"] and res.fraction_retrained == 1.0 and d["residual_actual"] <= d["budget"]
    # the case the unscaled bound (Guo et al.'s R = 1) got wrong: it fits the budget, the true residual does not
    assert d["residual_bound"] / d["max_row_norm"] < d["budget"] < d["residual_newton"]
    # control: the same rows scaled to the unit sphere are certified with one Newton step
    unit = train_certified(nn.Sequential(C.UnitNorm(), nn.Linear(4, 2)), data, CFG)
    du = unlearn(unit, split.forget, split.retain, CFG).details
    assert not du["retrained"] and du["residual_actual"] <= du["residual_bound"] <= du["budget"]


def test_exact_residual_is_checked_even_if_the_bound_says_yes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken (zero) bound must not certify: the computed residual is the last word."""
    monkeypatch.setattr(C, "residual_bound", lambda X, u: torch.zeros(u.shape[0], dtype=u.dtype))
    data = _rows(1000.0)
    split = forget_split(data, [0])
    d = unlearn(train_certified(nn.Linear(4, 2), data, CFG), split.forget, split.retain, CFG).details
    assert d["retrained"] and d["retrain_reason"] == "residual_actual exceeds budget"
    # control: on unit-norm rows the exact residual fits, so the (broken) bound's "yes" stands
    unit = train_certified(nn.Sequential(C.UnitNorm(), nn.Linear(4, 2)), data, CFG)
    du = unlearn(unit, split.forget, split.retain, CFG).details
    assert not du["retrained"] and du["spent"] == du["residual_actual"] > 0


def test_unconverged_newton_is_refused() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 10, generator=g)
    data = ArrayDataset(x / x.norm(dim=1, keepdim=True), (x[:, 0] > 0).long())  # separable
    cfg = replace(CFG, l2=1e-3, sigma=1.0, newton_iters=1)
    with pytest.raises(InvalidParameterError, match="'newton_iters'"):
        train_certified(nn.Linear(10, 2), data, cfg)
    model = train_certified(nn.Linear(10, 2), data, replace(cfg, newton_iters=30))  # control: converges
    st = C.state_of(model)
    X = C.features(data.x, model)
    assert float(C.gradient(st.w, X, C.signs(data.y, 2), st.l2, st.b).norm()) <= C.tolerance(X)


class _Wrapped(nn.Module):
    """``nn.Sequential(UnitNorm(), nn.Linear(d, 2))`` written as a class."""

    def __init__(self, d: int, after: str = "") -> None:
        super().__init__()
        self.norm, self.lin, self.after = C.UnitNorm(), nn.Linear(d, 2), after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.lin(self.norm(x))
        if self.after == "scale":
            return 2 * z
        if self.after == "twice":
            return self.lin(self.norm(x)) + 0 * z
        return z


def _shifted(n: int = 400, d: int = 6) -> ArrayDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g) * 5 + 2
    return ArrayDataset(x, (x[:, 0] + x[:, 1] > 4).long())


def test_custom_module_is_fit_on_its_own_feature_map() -> None:
    data, cfg = _shifted(), replace(CFG, l2=1e-2, sigma=0.1)
    seq = train_certified(nn.Sequential(C.UnitNorm(), nn.Linear(6, 2)), data, cfg)
    wr = train_certified(_Wrapped(6), data, cfg)
    assert torch.allclose(C.features(data.x, wr), C.features(C.UnitNorm()(data.x)))
    assert torch.equal(C.state_of(wr).w, C.state_of(seq).w)
    split = forget_split(data, [0, 1, 2])
    res = unlearn(wr, split.forget, split.retain, cfg)
    st = C.state_of(res.model)
    Xr = C.features(C.UnitNorm()(split.retain.x))  # the released model's own features
    true = float(C.gradient(st.w, Xr, C.signs(split.retain.y, 2), st.l2, st.b).norm())
    assert true == pytest.approx(res.details["residual_actual"], rel=1e-9)
    assert true <= res.details["budget"]
    # control: raw features give another model, with a residual far above the budget
    raw = float(C.gradient(st.w, C.features(split.retain.x), C.signs(split.retain.y, 2), st.l2, st.b).norm())
    assert raw > 100 * res.details["budget"]


@pytest.mark.parametrize(
    "model",
    [_Wrapped(6, "scale"), _Wrapped(6, "twice"), nn.Sequential(nn.Linear(6, 2), nn.Softmax(dim=1))],
    ids=["scaled-output", "linear-called-twice", "softmax-after"],
)
def test_something_after_the_linear_is_refused(model: nn.Module) -> None:
    with pytest.raises(UnsupportedModuleError, match="'model'"):
        train_certified(model, _shifted(), CFG)


def test_frozen_feature_extractor_is_allowed_trainable_one_refused() -> None:
    torch.manual_seed(0)
    ext = nn.Linear(5, 8)
    for p in ext.parameters():
        p.requires_grad_(False)
    frozen = nn.Sequential(ext, nn.ReLU(), C.UnitNorm(), nn.Linear(8, 2))
    data = ArrayDataset(torch.randn(50, 5), torch.randint(0, 2, (50,)))
    model = train_certified(frozen, data, CFG)
    assert torch.allclose(C.features(data.x, model)[:, :-1], C.UnitNorm()(torch.relu(ext(data.x))).double())
    trainable = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 2))  # a hidden layer: non-convex
    with pytest.raises(UnsupportedModuleError) as err:
        train_certified(trainable, data, CFG)
    assert "0 (Linear)" in str(err.value) and "2 (Linear)" in str(err.value)  # both layers named


def _b(cfg: UnlearnConfig, data: ArrayDataset) -> torch.Tensor:
    return C.state_of(train_certified(nn.Sequential(C.UnitNorm(), nn.Linear(4, 3)), data, cfg)).b


def test_secure_rng_draws_fresh_noise_seeded_repeats() -> None:
    g = torch.Generator().manual_seed(0)
    data = ArrayDataset(torch.randn(100, 4, generator=g), torch.randint(0, 3, (100,), generator=g))
    cfg = replace(CFG, l2=1e-2, sigma=1.0)
    assert torch.equal(_b(cfg, data), _b(cfg, data))  # seeded: anyone with the seed recomputes b
    sec = replace(cfg, secure_rng=True)
    assert not torch.equal(_b(sec, data), _b(sec, data))
    assert not torch.equal(_b(sec, data), _b(cfg, data))
    # the retraining fallback draws fresh secure noise too
    split = forget_split(data, [0, 1])
    m = train_certified(nn.Sequential(C.UnitNorm(), nn.Linear(4, 3)), data, sec)
    tight = replace(sec, epsilon=1e-12)
    r1, r2 = (unlearn(m, split.forget, split.retain, tight) for _ in range(2))
    assert r1.details["retrained"] and r1.details["secure_rng"]
    assert not torch.equal(C.state_of(r1.model).b, C.state_of(r2.model).b)


@pytest.mark.parametrize("secure", [False, True])
def test_noise_has_the_configured_scale(secure: bool) -> None:
    """40,000 draws: the sample std is within 2% of sigma (its s.e. is 0.35%); 2/3 and 3/2 sigma are rejected."""
    sigma = 2.5
    b = C.draw_noise((40, 1000), sigma, 7, secure)
    sd, mean = float(b.std()), float(b.mean())
    assert abs(sd - sigma) < 0.02 * sigma and abs(mean) < 4 * sigma / 200
    for wrong in (2 / 3 * sigma, 1.5 * sigma):
        assert abs(sd - wrong) > 0.02 * wrong


def test_secure_rng_must_be_bool() -> None:
    with pytest.raises(InvalidParameterError, match="'secure_rng'"):
        UnlearnConfig(secure_rng=1)  # type: ignore[arg-type]
