"""MST's three steps on top of ``mbi`` (McKenna, Miklau & Sheldon 2021, "Winning the NIST Contest:
A scalable and general approach to differentially private synthetic data", Algorithm 1).

privlab runs the mechanism itself instead of smartnoise-synth's ``MST``: that wrapper passes the exact
private row count (``known_total=len(data)``) to Private-PGM, in the selection step and in the final
model. The count is not measured by any budgeted mechanism, so under add/remove-one adjacency it is a
free, exact release (and it also changes the selection scores' sensitivity). Here the total is never
read from the data: ``mbi`` estimates it from the noisy marginals (its minimum-variance combination of
their sums), so every data-dependent quantity is one of the three measurements below.

Steps, each rho/3-zCDP under add/remove-one adjacency (one row changes one cell of every marginal by 1):

1. *1-way marginals.* All d of them with Gaussian noise sigma_1 = sqrt(3 d / (2 rho)) per cell. The
   concatenated vector has L2 sensitivity sqrt(d), so the release is d / (2 sigma_1^2) = rho/3-zCDP
   (Bun & Steinke 2016, Prop. 1.6).
2. *Tree selection.* Fit the independent model on the 1-way measurements (``mbi``, no known total);
   the quality of a pair (a, b) is ``||M_ab(D) - M_ab(model)||_1``, sensitivity 1 since the model is
   fixed given step 1's output. d-1 rounds of the exponential mechanism with epsilon
   e = sqrt(8 (rho/3) / (d-1)) each grow a maximum spanning tree (Kruskal order: only edges joining two
   components are candidates). One round is e^2/8-zCDP (Cesar & Rogers 2021, "Bounding, Concentrating,
   and Truncating: Unifying Privacy Loss Composition for Data Analytics"), d-1 rounds rho/3.
3. *2-way marginals.* The d-1 tree edges with sigma_2 = sqrt(3 (d-1) / (2 rho)) per cell: rho/3.

Then Private-PGM (``mbi.estimation.mirror_descent``) fits a graphical model to all measurements; its
samples are post-processing. The paper's optional domain compression is not applied (privlab's
declared domains are small). The Gaussian noise comes from OpenDP's sampler through
``snsynth.utils.gaussian_noise`` (not seedable); ``seed`` drives the exponential mechanism only.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from privlab.errors import InvalidParameterError

NoiseFn = Callable[[float, int], np.ndarray]
ESTIMATION_ITERS = 2000


def opendp_noise(sigma: float, size: int) -> np.ndarray:
    """``size`` draws of N(0, sigma^2) from OpenDP's floating-point-safe sampler (via smartnoise-synth)."""
    from snsynth.utils import gaussian_noise

    return np.asarray(gaussian_noise(sigma, size), dtype=float)


def mst_sigmas(rho: float, d: int) -> tuple[float, float]:
    """Per-cell noise of MST's 1-way and 2-way measurements: sqrt(3k / (2 rho)) for k marginals.

    k marginals of sensitivity 1 each (L2 sensitivity sqrt(k) together) at std sigma are
    k / (2 sigma^2)-zCDP, so sigma = sqrt(3k / (2 rho)) spends rho/3 (Bun & Steinke 2016).
    """
    if not rho > 0 or math.isinf(rho):
        raise InvalidParameterError(f"The 'rho' parameter of mst_sigmas must be a positive finite float. Got {rho!r}.")
    if d < 1:
        raise InvalidParameterError(f"The 'd' parameter of mst_sigmas must be at least 1. Got {d!r}.")
    return math.sqrt(3 * d / (2 * rho)), math.sqrt(3 * max(d - 1, 1) / (2 * rho))


def selection_epsilon(rho: float, d: int) -> float:
    """Exponential-mechanism epsilon per tree edge: e = sqrt(8 (rho/3) / (d - 1)), so (d-1) e^2/8 = rho/3."""
    if d < 2:
        raise InvalidParameterError(f"The 'd' parameter of selection_epsilon must be at least 2. Got {d!r}.")
    return math.sqrt(8 * (rho / 3) / (d - 1))


def exponential_mechanism(quality: np.ndarray, epsilon: float, rng: np.random.Generator) -> int:
    """Index drawn with probability proportional to exp(epsilon * q / 2) (sensitivity-1 qualities;
    McSherry & Talwar 2007)."""
    score = 0.5 * epsilon * np.asarray(quality, dtype=float)
    p = np.exp(score - score.max())
    return int(rng.choice(len(p), p=p / p.sum()))


def measure(data: Any, cliques: Sequence[tuple[str, ...]], sigma: float, noise: NoiseFn) -> list[Any]:
    """Noisy marginals ``M_c(D) + N(0, sigma^2 I)`` as ``mbi.LinearMeasurement`` objects."""
    from mbi import LinearMeasurement

    out = []
    for cl in cliques:
        x = np.asarray(data.project(cl).datavector(), dtype=float)
        out.append(LinearMeasurement(x + noise(sigma, x.size), cl, sigma))
    return out


def estimate(domain: Any, measurements: list[Any], iters: int = ESTIMATION_ITERS) -> Any:
    """Private-PGM fit to the measurements; the total is mbi's estimate from the noisy sums (no known total)."""
    from mbi import estimation, marginal_oracles

    return estimation.mirror_descent(
        domain, measurements, iters=iters, marginal_oracle=marginal_oracles.message_passing_stable
    )


def select_tree(data: Any, model: Any, epsilon: float, rng: np.random.Generator) -> list[tuple[str, str]]:
    """d-1 exponential-mechanism draws of edges between components, quality ``||M_ab(D) - M_ab(model)||_1``."""
    attrs = list(data.domain.attrs)
    quality = {}
    for a, b in itertools.combinations(attrs, 2):
        x = np.asarray(data.project((a, b)).datavector())
        quality[a, b] = float(np.abs(x - np.asarray(model.project((a, b)).datavector())).sum())
    component = {a: i for i, a in enumerate(attrs)}
    edges: list[tuple[str, str]] = []
    for _ in range(len(attrs) - 1):
        cands = [e for e in quality if component[e[0]] != component[e[1]]]
        a, b = cands[exponential_mechanism(np.array([quality[e] for e in cands]), epsilon, rng)]
        old, new = component[b], component[a]
        component = {k: new if v == old else v for k, v in component.items()}
        edges.append((a, b))
    return edges


def run_mst(data: Any, rho: float, seed: int, noise: NoiseFn = opendp_noise) -> tuple[Any, list[tuple[str, str]]]:
    """MST (module docstring) on an ``mbi.Dataset``: the fitted ``MarkovRandomField`` and the tree's edges.

    Spends rho/3 per step, rho in total (rho-zCDP under add/remove-one adjacency).
    """
    rng = np.random.default_rng(seed)
    d = len(data.domain.attrs)
    sigma1, sigma2 = mst_sigmas(rho, d)
    log1 = measure(data, [(a,) for a in data.domain.attrs], sigma1, noise)
    if d == 1:
        return estimate(data.domain, log1), []
    edges = select_tree(data, estimate(data.domain, log1, iters=1000), selection_epsilon(rho, d), rng)
    log2 = measure(data, edges, sigma2, noise)
    return estimate(data.domain, log1 + log2), edges
