"""LiRA, the likelihood-ratio attack (Carlini et al. 2022, "Membership Inference Attacks From First Principles").

On the scaled logit ``phi(x) = log(p / (1 - p))`` of the target, per example ``x``:

* online (Sec. IV-C): fit Gaussians to ``phi`` of reference models trained with ``x`` (IN) and
  without it (OUT); score = ``log N(phi; mu_in, s_in^2) - log N(phi; mu_out, s_out^2)``.
* offline (Sec. IV-D): OUT models only, a one-sided test: reject "x is OUT" when
  ``Pr[N(mu_out, s_out^2) >= phi]`` is small. We return ``(phi - mu_out) / s_out``, a monotone
  transform of 1 - p-value that keeps its resolution where the p-value underflows.

Variance: per example, or one global variance per group pooled over all examples (the within-
example variance, ``sum_n sum_k (phi_kn - mu_n)^2 / (#obs - #examples)``). The paper finds the
global variance better with few reference models (below about 64, Sec. VI-A), which is what
``variance="auto"`` picks. Examples with fewer than two observations in a group use the global
variance. Online, an example with no observation in a group uses the other group's mean shifted by
the average IN-OUT gap; offline, an example no reference left out uses the OUT observations of all
examples (mean and pooled std), so offline scores never depend on IN references. Online LiRA needs
IN observations: a mask with no example IN at least two references is refused (it would fall back
to an arbitrary IN variance and silently score near chance).
"""

from __future__ import annotations

import numpy as np

from privlab._validation import check_choice, check_real
from privlab.attacks.base import check_reference, check_same_examples, fitted, register, target_row
from privlab.attacks.signals import Signals
from privlab.errors import InvalidParameterError

GLOBAL_VARIANCE_BELOW = 64  # Carlini et al. 2022, Sec. VI-A


def _group_stats(phi: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Per-example mean (N,), per-example std (N,), counts (N,) and pooled std over the entries where m."""
    cnt = m.sum(0)
    mean = np.where(cnt > 0, (phi * m).sum(0) / np.maximum(cnt, 1), np.nan)
    dev2 = ((phi - np.nan_to_num(mean)) ** 2) * m
    var = np.where(cnt > 1, dev2.sum(0) / np.maximum(cnt - 1, 1), np.nan)
    dof = int((cnt - 1)[cnt > 1].sum())
    pooled = float(np.sqrt(dev2[:, cnt > 1].sum() / dof)) if dof > 0 else 1.0
    return mean, np.sqrt(var), cnt, pooled


def _logpdf(x: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    return np.asarray(-0.5 * ((x - mu) / sd) ** 2 - np.log(sd), dtype=np.float64)  # the 2*pi term cancels


class LiRA:
    """Carlini et al. 2022 LiRA; ``online`` uses IN and OUT references, offline OUT only."""

    needs_reference = True

    def __init__(self, online: bool = True, variance: str = "auto", min_std: float = 1e-3) -> None:
        self.online = bool(online)
        self.variance = check_choice(variance, "variance", "LiRA", ("auto", "global", "per_example"))
        self.min_std = check_real(min_std, "min_std", "LiRA", low=0.0, low_open=True)
        self.name = "lira_online" if self.online else "lira_offline"
        self._fit: dict[str, np.ndarray] | None = None
        self.variance_used = ""

    def fit(self, reference: Signals | None, mask: np.ndarray | None, population: Signals | None = None) -> LiRA:
        m = check_reference(reference, mask, "LiRA", min_models=2)
        phi = np.asarray(reference.confidence, dtype=np.float64)  # type: ignore[union-attr]  # (K, N)
        mu_out, sd_out, n_out, g_out = _group_stats(phi, ~m)
        mu_in, sd_in, n_in, g_in = _group_stats(phi, m)
        for group, n, name in ((~m, n_out, "OUT"), (m, n_in, "IN")):
            if (self.online or name == "OUT") and not (n > 1).any():
                raise InvalidParameterError(
                    f"The 'mask' parameter of {self.name}.fit must leave some example {name} at least two "
                    f"reference models (to fit the {name} variance). Got {int(group.sum())} {name} entries, "
                    f"at most {int(n.max())} per example, instead."
                )
        if self.online:
            both = (n_in > 0) & (n_out > 0)
            gap = float(np.mean(mu_in[both] - mu_out[both])) if both.any() else 0.0
            mu_in = np.where(n_in > 0, mu_in, mu_out + gap)
            mu_out = np.where(n_out > 0, mu_out, mu_in - gap)
        else:  # OUT observations only: an example nobody left out gets every example's OUT distribution
            mu_out = np.where(n_out > 0, mu_out, float(phi[~m].mean()))
            sd_out = np.where(n_out > 0, sd_out, g_out)
        use_global = self.variance == "global" or (self.variance == "auto" and m.shape[0] < GLOBAL_VARIANCE_BELOW)
        self.variance_used = "global" if use_global else "per_example"
        if use_global:
            sd_in, sd_out = np.full_like(mu_in, g_in), np.full_like(mu_out, g_out)
        else:
            sd_in, sd_out = np.where(n_in > 1, sd_in, g_in), np.where(n_out > 1, sd_out, g_out)
        self._fit = {
            "mu_in": mu_in,
            "mu_out": mu_out,
            "sd_in": np.maximum(sd_in, self.min_std),
            "sd_out": np.maximum(sd_out, self.min_std),
        }
        return self

    def score(self, target: Signals, population: Signals | None = None) -> np.ndarray:
        f = fitted(self._fit, "LiRA")
        phi = np.asarray(target.confidence[target_row(target, "LiRA")], dtype=np.float64)
        check_same_examples(phi.shape[0], f["mu_out"].shape[0], self.name)
        if self.online:
            return _logpdf(phi, f["mu_in"], f["sd_in"]) - _logpdf(phi, f["mu_out"], f["sd_out"])
        return np.asarray((phi - f["mu_out"]) / f["sd_out"], dtype=np.float64)


for _online in (True, False):
    _kind = "online" if _online else "offline"
    register(f"lira_{_kind}", lambda _o=_online, **kw: LiRA(online=_o, **kw))
    for _var in ("global", "per_example"):
        register(f"lira_{_kind}_{_var}", lambda _o=_online, _v=_var, **kw: LiRA(online=_o, variance=_v, **kw))
