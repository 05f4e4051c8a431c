"""Certified removal for L2-regularised logistic regression (Guo, Goldstein, Hannun, van der Maaten
2020, "Certified Data Removal from Machine Learning Models", ICML).

Model: an ``nn.Linear``, or an ``nn.Sequential`` of parameter-free feature maps followed by one
``nn.Linear`` (e.g. :class:`UnitNorm`, Guo et al.'s preprocessing to ``||x|| <= 1``, or a frozen
feature extractor with no trainable parameters), read as K one-vs-rest binary logistic
regressions on ``x~ = [phi(x), 1]`` (the bias is a weight on a constant feature). Head k, labels
``y_k = +1 if y == k else -1``, minimises the perturbed objective (Guo et al. Eq. 2 + Sec. 3.2)

    L_b(w; D) = sum_i log(1 + exp(-y_i w^T x_i)) + lambda n / 2 ||w||^2 + b^T w,   b ~ N(0, sigma^2 I),

solved to machine precision by damped Newton (:func:`train_certified`).

Removal of m rows (Guo et al. Sec. 3.1, batch form of Sec. 4): with ``Delta = m lambda w* + sum_j
grad l(w*^T x_j, y_j)`` over the removed rows and ``H`` the Hessian of ``L(.; D')`` at ``w*``,

    w^- = w* + H^{-1} Delta                                        (one Newton step)

Gradient residual bound (data-dependent, Guo et al. Theorem 2; ``l''`` is gamma-Lipschitz with
gamma = 1/4 for the logistic loss): ``||grad L_b(w^-; D')|| <= gamma ||X'|| ||H^{-1} Delta||
||X' H^{-1} Delta||`` per head; the K heads are one stacked parameter vector, whose residual is at
most the root-sum-square of the heads' bounds; successive removals add their bounds (Sec. 4).

Guarantee (Guo et al. Theorem 3): if the accumulated residual is at most ``eps' = sigma * epsilon
/ c`` with ``c = sqrt(2 log(1.5 / delta))``, the released model is (epsilon, delta)-certified
removal. When a removal would exceed that budget, the model is retrained from scratch on the
retain set with fresh noise (their Algorithm 1's fallback) and the budget is reset.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from privlab.data import ArrayDataset
from privlab.errors import InvalidParameterError, UnsupportedModuleError
from privlab.unlearn._steps import sub_seed
from privlab.unlearn.base import UnlearnConfig, UnlearnResult, register

GAMMA = 0.25  # Lipschitz constant of l'' for the logistic loss (Guo et al. Sec. 3.1); true value 1/(6 sqrt 3)
STATE_ATTR = "privlab_certified"


@dataclass(frozen=True, eq=False)
class CertifiedState:
    """What a certified model carries: the exact float64 weights (K, D), its noise b, the budget spent."""

    w: torch.Tensor
    b: torch.Tensor
    l2: float
    sigma: float
    n_train: int
    spent: float = 0.0
    removals: int = 0


def budget(sigma: float, epsilon: float, delta: float) -> float:
    """``eps' = sigma * epsilon / c``, ``c = sqrt(2 log(1.5/delta))`` (Guo et al. Theorem 3)."""
    return sigma * epsilon / math.sqrt(2 * math.log(1.5 / delta))


def linear_layer(model: nn.Module, owner: str = "certified removal") -> nn.Linear:
    """The model's single ``nn.Linear``; anything else with parameters (conv, hidden layers) is refused."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    others = [
        type(m).__name__
        for m in model.modules()
        if not isinstance(m, nn.Linear) and any(True for _ in m.parameters(recurse=False))
    ]
    if len(linears) != 1 or others:
        kinds = sorted({type(m).__name__ for m in model.modules() if any(True for _ in m.parameters(recurse=False))})
        raise UnsupportedModuleError(
            f"The 'model' parameter of {owner} must be a linear model (one nn.Linear, optionally after nn.Flatten): "
            f"the guarantee of Guo et al. 2020 needs a convex loss. Got {type(model).__name__} with layers "
            f"{kinds} instead; use an approximate or exact method (e.g. 'scrub', 'retrain', 'sisa')."
        )
    return linears[0]


class UnitNorm(nn.Module):
    """``flatten(x) / ||flatten(x)||``: rows on the unit sphere (Guo et al. 2020's ``||x|| <= 1``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = x.reshape(len(x), -1)
        return f / f.norm(dim=1, keepdim=True).clamp_min(1e-12)


def feature_map(model: nn.Module) -> nn.Module | None:
    """The parameter-free modules before the model's ``nn.Linear`` (an ``nn.Sequential``), or None."""
    if not isinstance(model, nn.Sequential):
        return None
    mods = list(model)
    pos = next((i for i, m in enumerate(mods) if isinstance(m, nn.Linear)), None)
    if pos is None or pos != len(mods) - 1:
        raise UnsupportedModuleError(
            "The 'model' parameter of certified removal must end with its nn.Linear (nothing after it). "
            f"Got {[type(m).__name__ for m in mods]} instead."
        )
    return nn.Sequential(*mods[:pos]) if pos else None


def features(x: torch.Tensor, model: nn.Module | None = None) -> torch.Tensor:
    """``[phi(x), 1]`` in float64: (N, D); ``phi`` = the model's feature map, then flattened."""
    fm = feature_map(model) if model is not None else None
    if fm is not None:
        with torch.no_grad():
            x = fm(x)
    f = x.reshape(len(x), -1).to(torch.float64)
    return torch.cat([f, torch.ones(len(x), 1, dtype=torch.float64)], dim=1)


def signs(y: torch.Tensor, k: int) -> torch.Tensor:
    """(N, K) one-vs-rest labels in {-1, +1}."""
    return torch.where(torch.nn.functional.one_hot(y.long(), k).bool(), 1.0, -1.0).to(torch.float64)


def objective(w: torch.Tensor, X: torch.Tensor, S: torch.Tensor, lam: float, b: torch.Tensor) -> torch.Tensor:
    """(K,) values of ``L_b`` per head; ``w`` (K, D), ``X`` (N, D), ``S`` (N, K)."""
    z = X @ w.T  # (N, K)
    n = X.shape[0]
    return torch.nn.functional.softplus(-S * z).sum(0) + lam * n / 2 * (w * w).sum(1) + (b * w).sum(1)


def gradient(w: torch.Tensor, X: torch.Tensor, S: torch.Tensor, lam: float, b: torch.Tensor) -> torch.Tensor:
    """(K, D) gradient of ``L_b``: ``sum_i -y_i sigma(-y_i z_i) x_i + lambda n w + b``."""
    z = X @ w.T
    coef = -S * torch.sigmoid(-S * z)  # (N, K)
    return coef.T @ X + lam * X.shape[0] * w + b


def hessians(w: torch.Tensor, X: torch.Tensor, lam: float) -> torch.Tensor:
    """(K, D, D): ``X^T diag(s (1 - s)) X + lambda n I`` per head, ``s = sigmoid(X w_k)``."""
    s = torch.sigmoid(X @ w.T)  # (N, K)
    d = s * (1 - s)
    eye = torch.eye(X.shape[1], dtype=X.dtype) * lam * X.shape[0]
    return torch.stack([(X * d[:, k : k + 1]).T @ X + eye for k in range(w.shape[0])])


def minimise(
    X: torch.Tensor, S: torch.Tensor, lam: float, b: torch.Tensor, iters: int, w0: torch.Tensor
) -> torch.Tensor:
    """Damped Newton on each head's strongly convex ``L_b`` (backtracking on the objective).

    Gradients and objective are float64, so the fixed point is the exact minimiser; the Hessian of
    the search direction is formed in float32 (twice as fast; it only changes the path taken).
    """
    w = w0.clone()
    X32 = X.float()
    for _ in range(iters):
        g = gradient(w, X, S, lam, b)
        if float(g.norm()) <= 1e-9 * max(1.0, X.shape[0]):
            break
        step = torch.linalg.solve(hessians(w.float(), X32, lam).double(), g.unsqueeze(-1)).squeeze(-1)
        f0 = objective(w, X, S, lam, b)
        t = torch.ones(w.shape[0], 1, dtype=w.dtype)
        for _ in range(30):
            cand = w - t * step
            worse = objective(cand, X, S, lam, b) > f0 - 1e-4 * t.squeeze(1) * (g * step).sum(1)
            if not worse.any():
                break
            t = torch.where(worse.unsqueeze(1), t / 2, t)
        w = w - t * step
    return w


def _write(model: nn.Module, w: torch.Tensor) -> None:
    lin = linear_layer(model)
    with torch.no_grad():
        lin.weight.copy_(w[:, :-1].to(lin.weight.dtype))
        if lin.bias is not None:
            lin.bias.copy_(w[:, -1].to(lin.bias.dtype))


def _fit(model: nn.Module, data: ArrayDataset, config: UnlearnConfig, seed: int) -> CertifiedState:
    lin = linear_layer(model, "train_certified")
    if lin.bias is None:
        raise UnsupportedModuleError(
            "The 'model' parameter of train_certified must have a bias (it is the weight of the constant feature). "
            "Got nn.Linear(bias=False) instead."
        )
    X, S = features(data.x, model), signs(data.y, lin.out_features)
    gen = torch.Generator().manual_seed(sub_seed(seed, 3))
    b = torch.randn(lin.out_features, X.shape[1], generator=gen, dtype=torch.float64) * config.sigma
    w = minimise(X, S, config.l2, b, config.newton_iters, torch.zeros_like(b))
    _write(model, w)
    return CertifiedState(w, b, config.l2, config.sigma, len(data))


def train_certified(model: nn.Module, data: ArrayDataset, config: UnlearnConfig) -> nn.Module:
    """Fit ``model`` (in place) to the exact minimiser of ``L_b`` on ``data``; b's seed is ``config.train.seed``."""
    setattr(model, STATE_ATTR, _fit(model, data, config, config.train.seed))
    return model.eval()


def state_of(model: nn.Module) -> CertifiedState:
    st = getattr(model, STATE_ATTR, None)
    if not isinstance(st, CertifiedState):
        linear_layer(model)
        raise InvalidParameterError(
            "The 'model' parameter of certified removal must come from privlab.unlearn.certified.train_certified "
            "(the guarantee needs the exact minimiser of the noise-perturbed objective). Got a model without it."
        )
    return st


def residual_bound(X: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """(K,) Guo et al. Theorem 2: ``gamma ||X|| ||u_k|| ||X u_k||`` for Newton updates ``u`` (K, D)."""
    xnorm = torch.linalg.matrix_norm(X, ord=2)
    return GAMMA * xnorm * u.norm(dim=1) * (X @ u.T).norm(dim=0)


@register("certified", "certified", "certified removal (Guo et al. 2020)", train=train_certified)
def unlearn_certified(
    model: nn.Module, forget: ArrayDataset, retain: ArrayDataset, config: UnlearnConfig
) -> UnlearnResult:
    st = state_of(model)
    if len(forget) + len(retain) != st.n_train:
        raise InvalidParameterError(
            f"The 'forget' parameter of certified removal plus 'retain' must be the model's training set "
            f"({st.n_train} rows). Got {len(forget)} + {len(retain)} rows instead."
        )
    K = st.w.shape[0]
    Xf, Sf = features(forget.x, model), signs(forget.y, K)
    Xr, Sr = features(retain.x, model), signs(retain.y, K)
    lam, m = st.l2, len(forget)
    # Delta = m lambda w* + sum_j grad l(w*^T x_j, y_j) over the removed rows (Guo et al. Sec. 3.1)
    coef = -Sf * torch.sigmoid(-Sf * (Xf @ st.w.T))
    delta_ = m * lam * st.w + coef.T @ Xf
    u = torch.linalg.solve(hessians(st.w, Xr, lam), delta_.unsqueeze(-1)).squeeze(-1)
    heads = residual_bound(Xr, u)
    bound = float(heads.norm())
    eps_budget = budget(st.sigma, config.epsilon, config.delta)
    out = copy.deepcopy(model)
    retrained = st.spent + bound > eps_budget
    if retrained:
        new = _fit(out, retain, config, sub_seed(config.seed, 100 + st.removals))
        new = CertifiedState(new.w, new.b, new.l2, new.sigma, new.n_train, 0.0, st.removals + 1)
        steps = config.newton_iters
    else:
        w = st.w + u
        _write(out, w)
        new = CertifiedState(w, st.b, lam, st.sigma, len(retain), st.spent + bound, st.removals + 1)
        steps = 1
    setattr(out, STATE_ATTR, new)
    actual = float(gradient(new.w, Xr, Sr, lam, new.b).norm())
    details = {
        "residual_bound": bound,
        "residual_bound_per_head": heads.tolist(),
        "residual_actual": actual,
        "spent": new.spent,
        "budget": eps_budget,
        "epsilon": config.epsilon,
        "delta": config.delta,
        "sigma": st.sigma,
        "l2": lam,
        "retrained": retrained,
        "guarantee": f"({config.epsilon:g}, {config.delta:g})-certified removal (Guo et al. 2020, Theorem 3)",
    }
    return UnlearnResult(out.eval(), "certified", 0.0, steps, len(retain) * steps, 1.0 if retrained else 0.0, details)
