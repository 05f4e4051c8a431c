"""Certified removal for L2-regularised logistic regression (Guo, Goldstein, Hannun, van der Maaten
2020, "Certified Data Removal from Machine Learning Models", ICML).

Model: any module whose only trainable module is one ``nn.Linear`` that produces the output, e.g.
``nn.Linear``, ``nn.Sequential(UnitNorm(), nn.Linear)`` (:class:`UnitNorm` is Guo et al.'s
preprocessing to ``||x|| <= 1``), or a frozen (``requires_grad=False``) feature extractor followed
by the Linear, read as K one-vs-rest binary logistic regressions on ``x~ = [phi(x), 1]``: ``phi(x)``
is what the Linear receives in ``model(x)`` (captured with a forward hook, so a custom ``forward``
is read as it computes), and the bias is a weight on a constant feature. Head k, labels
``y_k = +1 if y == k else -1``, minimises the perturbed objective (Guo et al. Eq. 2 + Sec. 3.2)

    L_b(w; D) = sum_i log(1 + exp(-y_i w^T x_i)) + lambda n / 2 ||w||^2 + b^T w,   b ~ N(0, sigma^2 I),

solved to machine precision by damped Newton (:func:`train_certified`; it raises if ``newton_iters``
steps do not reach the tolerance). ``b`` comes from ``config.train.seed`` (reproducible, and not
private against anyone who knows the seed) or, with ``config.secure_rng``, from the OS CSPRNG.

Removal of m rows (Guo et al. Sec. 3.1, batch form of Sec. 4): with ``Delta = m lambda w* + sum_j
grad l(w*^T x_j, y_j)`` over the removed rows and ``H`` the Hessian of ``L(.; D')`` at ``w*``,

    w^- = w* + H^{-1} Delta                                        (one Newton step)

Gradient residual bound (data-dependent, Guo et al. Corollary 1 generalised to rows of any norm,
derivation in :func:`residual_bound`; ``l''`` is gamma-Lipschitz, gamma = 1/4 for the logistic
loss): ``||grad L_b(w^-; D')|| <= gamma R ||X'|| ||H^{-1} Delta|| ||X' H^{-1} Delta||`` per head,
``R = max_i ||x~_i||``; the K heads are one stacked parameter vector, whose residual is at most the
root-sum-square of the heads' bounds; successive removals add their bounds (Sec. 4).

Guarantee (Guo et al. Theorem 3): if the accumulated residual is at most ``eps' = sigma * epsilon
/ c`` with ``c = sqrt(2 log(1.5 / delta))``, the released model is (epsilon, delta)-certified
removal. A removal is certified only if the accumulated bound *and* the exact residual (computed)
are within that budget; otherwise the model is retrained from scratch on the retain set with fresh
noise (their Algorithm 1's fallback) and the budget is reset.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from privlab.data import ArrayDataset
from privlab.dp.noise import secure_standard_normal
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


def trainable_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every submodule owning a parameter with ``requires_grad`` (frozen ones are skipped)."""
    return [(n, m) for n, m in model.named_modules() if any(p.requires_grad for p in m.parameters(recurse=False))]


def linear_layer(model: nn.Module, owner: str = "certified removal") -> nn.Linear:
    """The model's single trainable module, which must be an ``nn.Linear``.

    Modules before it may hold parameters only if they are frozen (``requires_grad=False``): they are
    then a fixed feature map ``phi`` and the loss stays convex in the Linear's weights.
    """
    trainable = trainable_modules(model)
    if len(trainable) != 1 or not isinstance(trainable[0][1], nn.Linear):
        kinds = [f"{n or '<model>'} ({type(m).__name__})" for n, m in trainable]
        raise UnsupportedModuleError(
            f"The 'model' parameter of {owner} must be a linear model: exactly one trainable module, an nn.Linear "
            "(feature maps before it are allowed if parameter-free or frozen with requires_grad=False); the guarantee "
            f"of Guo et al. 2020 needs a convex loss. Got {type(model).__name__} with trainable layers {kinds} "
            "instead; freeze the feature extractor, or use an approximate or exact method (e.g. 'scrub', 'retrain', "
            "'sisa')."
        )
    return cast(nn.Linear, trainable[0][1])


class UnitNorm(nn.Module):
    """``flatten(x) / ||flatten(x)||``: rows on the unit sphere (Guo et al. 2020's ``||x|| <= 1``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = x.reshape(len(x), -1)
        return f / f.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _linear_inputs(model: nn.Module, x: torch.Tensor, batch: int = 8192) -> torch.Tensor:
    """(N, in_features): what ``model``'s Linear actually receives when ``model(x)`` runs (eval mode).

    A forward hook captures the Linear's input, so any ``forward`` (``nn.Sequential`` or a custom
    module) is read the way it computes. Refused: a Linear that is not called exactly once per
    forward, that sees anything but (batch, in_features), or whose output is not the model's output
    (something after the Linear).
    """
    lin = linear_layer(model)
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def hook(_m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        seen.append((inp[0], out))

    modes = {m: m.training for m in model.modules()}
    handle = lin.register_forward_hook(hook)
    chunks = []
    try:
        model.eval()  # the released model is used in eval mode (dropout off, frozen norm statistics)
        with torch.no_grad():
            for i in range(0, len(x), batch):
                seen.clear()
                xb = x[i : i + batch]
                z = model(xb)
                ok = len(seen) == 1 and seen[0][0].shape == (len(xb), lin.in_features)
                if not ok or not isinstance(z, torch.Tensor) or not torch.equal(z, seen[0][1]):
                    raise UnsupportedModuleError(
                        "The 'model' parameter of certified removal must end with its nn.Linear, called once per "
                        "forward on (batch, in_features) rows, and return its output unchanged. Got "
                        f"{type(model).__name__} whose Linear was called {len(seen)} times"
                        + (f" on shape {tuple(seen[0][0].shape)}" if seen else "")
                        + " or whose output differs from the Linear's instead."
                    )
                chunks.append(seen[0][0].detach())
    finally:
        handle.remove()
        for m, t in modes.items():
            m.training = t
    return torch.cat(chunks) if chunks else torch.empty(0, lin.in_features)


def features(x: torch.Tensor, model: nn.Module | None = None) -> torch.Tensor:
    """``[phi(x), 1]`` in float64: (N, D).

    ``phi(x)`` is what the model's ``nn.Linear`` receives in ``model(x)`` (captured with a forward
    hook, so the feature map of any module is the one used); without ``model``, ``flatten(x)``.
    """
    f = _linear_inputs(model, x) if model is not None else x.reshape(len(x), -1)
    f = f.reshape(len(x), -1).to(torch.float64)
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


def tolerance(X: torch.Tensor) -> float:
    """Gradient norm at which :func:`minimise` stops: ``1e-9 * max(1, n) * max(1, max_i ||x_i||)``.

    Float64 round-off in a sum of n per-row gradients of norm up to ``max_i ||x_i||`` is about
    ``1e-16 n max_i ||x_i||``; the tolerance sits seven orders of magnitude above it.
    """
    r = float(X.norm(dim=1).max()) if len(X) else 1.0
    return 1e-9 * max(1.0, X.shape[0]) * max(1.0, r)


def minimise(
    X: torch.Tensor, S: torch.Tensor, lam: float, b: torch.Tensor, iters: int, w0: torch.Tensor
) -> torch.Tensor:
    """Damped Newton on each head's strongly convex ``L_b`` (backtracking on the objective).

    Gradients and objective are float64, so the fixed point is the exact minimiser; the Hessian of
    the search direction is formed in float32 (twice as fast; it only changes the path taken).
    Raises InvalidParameterError naming 'newton_iters' if ``||grad L_b|| > tolerance(X)`` after
    ``iters`` steps: the guarantee is about the exact minimiser, not an iterate near it.
    """
    w = w0.clone()
    X32 = X.float()
    tol = tolerance(X)
    for _ in range(iters):
        g = gradient(w, X, S, lam, b)
        if float(g.norm()) <= tol:
            return w
        step = torch.linalg.solve(hessians(w.float(), X32, lam).double(), g.unsqueeze(-1)).squeeze(-1)
        f0 = objective(w, X, S, lam, b)
        # near the minimiser the Armijo decrease falls below the float64 resolution of the objective
        # (a sum of n terms): allow that round-off, or the search halves t to nothing and Newton stalls
        slack = 1e-12 * f0.abs().clamp_min(1.0)
        t = torch.ones(w.shape[0], 1, dtype=w.dtype)
        for _ in range(30):
            cand = w - t * step
            worse = objective(cand, X, S, lam, b) > f0 - 1e-4 * t.squeeze(1) * (g * step).sum(1) + slack
            if not worse.any():
                break
            t = torch.where(worse.unsqueeze(1), t / 2, t)
        w = w - t * step
    gn = float(gradient(w, X, S, lam, b).norm())
    if gn > tol:
        raise InvalidParameterError(
            f"The 'newton_iters' parameter of certified removal must be large enough for Newton's method to reach "
            f"the exact minimiser of L_b (||grad L_b|| <= {tol:.3g}). Got {iters}, after which ||grad L_b|| = "
            f"{gn:.3g} instead; raise newton_iters, or l2 (a better-conditioned objective)."
        )
    return w


def _write(model: nn.Module, w: torch.Tensor) -> None:
    lin = linear_layer(model)
    with torch.no_grad():
        lin.weight.copy_(w[:, :-1].to(lin.weight.dtype))
        if lin.bias is not None:
            lin.bias.copy_(w[:, -1].to(lin.bias.dtype))


def draw_noise(shape: tuple[int, int], sigma: float, seed: int, secure: bool) -> torch.Tensor:
    """The objective-perturbation noise ``b ~ N(0, sigma^2 I)`` (K, D), float64.

    ``secure=False``: a seeded torch generator (stream 3 of ``seed``): reproducible, and *not private*
    against anyone who knows the seed (it is written in every report's config): with b known, the
    released weights reveal the unperturbed gradient ``grad L(w; D) = -b`` of the data.
    ``secure=True``: the operating system's CSPRNG (:func:`privlab.dp.noise.secure_standard_normal`,
    as DP-SGD's ``secure_rng``); ``seed`` is then ignored.
    """
    if secure:
        return secure_standard_normal(shape, torch.float64) * sigma
    gen = torch.Generator().manual_seed(sub_seed(seed, 3))
    return torch.randn(*shape, generator=gen, dtype=torch.float64) * sigma


def _fit(model: nn.Module, data: ArrayDataset, config: UnlearnConfig, seed: int) -> CertifiedState:
    lin = linear_layer(model, "train_certified")
    if lin.bias is None:
        raise UnsupportedModuleError(
            "The 'model' parameter of train_certified must have a bias (it is the weight of the constant feature). "
            "Got nn.Linear(bias=False) instead."
        )
    X, S = features(data.x, model), signs(data.y, lin.out_features)
    b = draw_noise((lin.out_features, X.shape[1]), config.sigma, seed, config.secure_rng)
    w = minimise(X, S, config.l2, b, config.newton_iters, torch.zeros_like(b))
    _write(model, w)
    return CertifiedState(w, b, config.l2, config.sigma, len(data))


def train_certified(model: nn.Module, data: ArrayDataset, config: UnlearnConfig) -> nn.Module:
    """Fit ``model`` (in place) to the exact minimiser of ``L_b`` on ``data``.

    b is drawn from the OS CSPRNG with ``config.secure_rng``; otherwise from ``config.train.seed``
    (reproducible, but then b -- and with it the data gradient the noise masks -- is known to anyone
    who knows the seed). Raises InvalidParameterError naming 'newton_iters' if Newton's method has
    not converged.
    """
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
    """(K,) gradient-residual bound ``gamma R ||X|| ||u_k|| ||X u_k||``, ``R = max_i ||x_i||``, of Newton updates ``u``.

    Derivation (Guo et al. 2020, proof of Theorem 1 / Corollary 1, without their ``||x_i|| <= 1``):
    ``grad L_b(w*; D') = -Delta`` and ``H u = Delta``, so only the change of the loss Hessian along
    the step remains, ``grad L_b(w* + u; D') = int_0^1 (H(w* + t u) - H(w*)) u dt = X^T v`` with
    ``v_i = c_i (x_i^T u)`` and ``|c_i| = |int_0^1 l''(z_i + t x_i^T u) - l''(z_i) dt| <= gamma |x_i^T u| / 2
    <= gamma R ||u|| / 2`` (l'' is gamma-Lipschitz). Hence ``||X^T v|| <= ||X|| ||v|| <= gamma/2 R ||X||
    ||u|| ||X u||``; the factor 1/2 is dropped (as in Guo et al.), and gamma = 1/4 exceeds the true
    1/(6 sqrt 3), so the bound has slack. Three powers of the row norm, as in the Hessian-Lipschitz
    constant ``gamma ||x||^3`` of ``l(w^T x)``: Guo et al.'s form is the case R = 1, which the
    constant feature alone already breaks (``||[phi(x), 1]|| = sqrt 2`` for unit-norm ``phi(x)``).
    """
    xnorm = torch.linalg.matrix_norm(X, ord=2)
    r = X.norm(dim=1).max()
    return GAMMA * r * xnorm * u.norm(dim=1) * (X @ u.T).norm(dim=0)


@register("certified", "certified", "certified removal (Guo et al. 2020)", train=train_certified)
def unlearn_certified(
    model: nn.Module, forget: ArrayDataset, retain: ArrayDataset, config: UnlearnConfig
) -> UnlearnResult:
    """One Newton removal step, certified if both the accumulated bound and the exact residual fit the budget.

    The certificate is issued only when ``spent + residual_bound <= eps'`` *and* the exact gradient
    residual ``||grad L_b(w^-; D')||`` (computed on the retain set) is ``<= eps'``; otherwise the
    model is retrained on ``retain`` with fresh noise (``details['retrain_reason']`` says why). The
    budget carried forward is ``max(spent + bound, residual_actual)``, so it always covers the
    residual the next removal starts from.
    """
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
    w = st.w + u
    newton_actual = float(gradient(w, Xr, Sr, lam, st.b).norm())
    reason = None
    if st.spent + bound > eps_budget:
        reason = "bound exceeds budget"
    elif newton_actual > eps_budget:
        reason = "residual_actual exceeds budget"
    if reason is None:
        _write(out, w)
        new = CertifiedState(w, st.b, lam, st.sigma, len(retain), max(st.spent + bound, newton_actual), st.removals + 1)
        steps = 1
    else:
        new = _fit(out, retain, config, sub_seed(config.seed, 100 + st.removals))
        new = CertifiedState(new.w, new.b, new.l2, new.sigma, new.n_train, 0.0, st.removals + 1)
        steps = config.newton_iters
    setattr(out, STATE_ATTR, new)
    actual = float(gradient(new.w, Xr, Sr, lam, new.b).norm())
    retrained = reason is not None
    details = {
        "residual_bound": bound,
        "residual_bound_per_head": heads.tolist(),
        "residual_actual": actual,
        "residual_newton": newton_actual,
        "max_row_norm": float(Xr.norm(dim=1).max()),
        "spent": new.spent,
        "budget": eps_budget,
        "epsilon": config.epsilon,
        "delta": config.delta,
        "sigma": st.sigma,
        "l2": lam,
        "secure_rng": config.secure_rng,
        "retrained": retrained,
        "retrain_reason": reason,
        "guarantee": f"({config.epsilon:g}, {config.delta:g})-certified removal (Guo et al. 2020, Theorem 3)",
    }
    return UnlearnResult(out.eval(), "certified", 0.0, steps, len(retain) * steps, 1.0 if retrained else 0.0, details)
