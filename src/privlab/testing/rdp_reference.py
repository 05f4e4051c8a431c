"""An independent Renyi-DP computation for the Poisson-subsampled Gaussian mechanism.

For integer order alpha >= 2, sampling rate q and noise multiplier sigma (Mironov, Talwar, Zhang
2019, "Renyi Differential Privacy of the Sampled Gaussian Mechanism", Sec. 3.3):

    A_alpha = sum_{k=0}^{alpha} C(alpha, k) (1 - q)^(alpha - k) q^k exp((k^2 - k) / (2 sigma^2))
    RDP(alpha) = log(A_alpha) / (alpha - 1)

composed over T steps by multiplying by T. Conversions to (epsilon, delta):

* classic (Mironov 2017, Prop. 3): eps = T RDP(alpha) + log(1/delta) / (alpha - 1);
* improved (Balle et al. 2020, Thm. 21; used by dp-accounting):
  eps = T RDP(alpha) + log((alpha - 1) / alpha) - (log(delta) + log(alpha)) / (alpha - 1).

Written with Python's arbitrary-precision integers and ``math.lgamma`` in log-space; it shares no
code with ``dp-accounting`` and serves as the oracle in the accounting golden tests.
"""

from __future__ import annotations

import math


def _logsumexp(xs: list[float]) -> float:
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


def rdp_subsampled_gaussian(q: float, sigma: float, alpha: int) -> float:
    """RDP of one step at integer order ``alpha`` (>= 2)."""
    if q == 0:
        return 0.0
    if q == 1:
        return alpha / (2 * sigma**2)
    terms = []
    for k in range(alpha + 1):
        log_binom = math.lgamma(alpha + 1) - math.lgamma(k + 1) - math.lgamma(alpha - k + 1)
        terms.append(log_binom + (alpha - k) * math.log1p(-q) + k * math.log(q) + (k * k - k) / (2 * sigma**2))
    return _logsumexp(terms) / (alpha - 1)


def epsilon_rdp(
    q: float, sigma: float, steps: int, delta: float, orders: range = range(2, 257), improved: bool = True
) -> float:
    """Epsilon after ``steps`` compositions, minimised over the integer ``orders``."""
    best = math.inf
    for a in orders:
        r = steps * rdp_subsampled_gaussian(q, sigma, a)
        if improved:
            eps = r + math.log((a - 1) / a) - (math.log(delta) + math.log(a)) / (a - 1)
        else:
            eps = r + math.log(1 / delta) / (a - 1)
        best = min(best, eps)
    return max(best, 0.0)
