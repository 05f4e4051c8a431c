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

*Domain compression* (the paper's MST description, :mod:`privlab.synth.generators.compress`, on by default):
after step 1, each attribute's categories with noisy count below 3 sigma_1 are merged into one; steps
2 and 3 and the model use the compressed domain, and sampled rows are decompressed (a merged category
drawn back uniformly, or proportionally to the clipped noisy counts). It reads only step 1's output,
so it is post-processing and spends nothing; the budget split is unchanged.

Then Private-PGM (``mbi.estimation.mirror_descent``) fits a graphical model to all measurements; its
samples are post-processing. The total it is given is the minimum-variance combination of the noisy
marginals' sums (:func:`~privlab.synth.generators.compress.minimum_variance_total`; ``mbi``'s own
estimator skips the whitened compressed 1-ways), never the private count. The Gaussian noise comes
from OpenDP's sampler through ``snsynth.utils.gaussian_noise`` (not seedable); ``seed`` drives the
exponential mechanism only.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from privlab._validation import check_choice
from privlab.errors import InvalidParameterError
from privlab.synth.generators.compress import (
    DECOMPRESS,
    AttributeCompression,
    compress_domain,
    compressed_oneway,
    minimum_variance_total,
)

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


def estimate(domain: Any, measurements: list[Any], total: float, iters: int = ESTIMATION_ITERS) -> Any:
    """Private-PGM fit to the measurements with the row count ``total`` (an estimate from noisy sums)."""
    from mbi import estimation, marginal_oracles

    return estimation.mirror_descent(
        domain, measurements, known_total=total, iters=iters, marginal_oracle=marginal_oracles.message_passing_stable
    )


def _weighted(factor: Any, weights: Any) -> Any:
    return factor.datavector() * weights


def oneway_measurement(noisy: np.ndarray, comp: AttributeCompression, attr: str, sigma: float) -> Any:
    """Step 1's noisy 1-way of ``attr`` as an ``mbi.LinearMeasurement`` on the compressed domain.

    Uncompressed: the identity query. Compressed: the whitened query ``q * marginal`` of
    :func:`~privlab.synth.generators.compress.compressed_oneway` (std sigma on every cell).
    """
    import jax.numpy as jnp
    from mbi import LinearMeasurement

    if not comp.merged:
        return LinearMeasurement(np.asarray(noisy, dtype=float), (attr,), sigma)
    y, q = compressed_oneway(noisy, comp)
    return LinearMeasurement(y, (attr,), sigma, query=functools.partial(_weighted, weights=jnp.asarray(q)))


def compress_dataset(data: Any, comp: dict[str, AttributeCompression]) -> Any:
    """The ``mbi.Dataset`` with every column mapped to its compressed codes, on the compressed domain."""
    from mbi import Dataset, Domain

    attrs = list(data.domain.attrs)
    cols = data.to_dict()
    dom = Domain(attrs, [comp[a].compressed_size for a in attrs])
    return Dataset({a: comp[a].compress(cols[a]) for a in attrs}, dom)


@dataclass(frozen=True)
class MSTFit:
    """What :func:`run_mst` fitted: the model on the compressed domain, the tree, the compression.

    ``domain`` is the original ``mbi.Domain``; :meth:`synthetic_data` samples the model and
    decompresses into it.
    """

    model: Any
    edges: list[tuple[str, str]]
    compression: dict[str, AttributeCompression]
    domain: Any

    def synthetic_data(self, rows: int, rng: np.random.Generator) -> Any:
        """``rows`` sampled rows (``mbi`` samples with numpy's global RNG) in the original domain."""
        from mbi import Dataset

        cols = self.model.synthetic_data(rows=rows).to_dict()
        return Dataset({a: c.decompress(cols[a], rng) for a, c in self.compression.items()}, self.domain)


def _identity(size: int) -> AttributeCompression:
    return AttributeCompression(size, tuple(range(size)), (), ())


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


def run_mst(
    data: Any,
    rho: float,
    seed: int,
    noise: NoiseFn = opendp_noise,
    compress: bool = True,
    decompress: str = "uniform",
) -> MSTFit:
    """MST (module docstring) on an ``mbi.Dataset``: the fitted model, the tree's edges and the compression.

    Spends rho/3 per step, rho in total (rho-zCDP under add/remove-one adjacency); ``compress``
    (the paper's domain compression) and ``decompress`` (``"uniform"`` or ``"noisy"``) are
    post-processing of step 1.
    """
    check_choice(decompress, "decompress", "run_mst", DECOMPRESS)
    rng = np.random.default_rng(seed)
    attrs = list(data.domain.attrs)
    d = len(attrs)
    sigma1, sigma2 = mst_sigmas(rho, d)
    ones = {}
    for a in attrs:  # step 1
        x = np.asarray(data.project((a,)).datavector(), dtype=float)
        ones[a] = x + noise(sigma1, x.size)
    comp = compress_domain(ones, sigma1, decompress) if compress else {a: _identity(ones[a].size) for a in attrs}
    cdata = compress_dataset(data, comp)
    log1 = [oneway_measurement(ones[a], comp[a], a, sigma1) for a in attrs]
    sums = [(float(y.sum()), sigma1**2 * y.size) for y in ones.values()]
    if d == 1:
        return MSTFit(estimate(cdata.domain, log1, minimum_variance_total(sums)), [], comp, data.domain)
    independent = estimate(cdata.domain, log1, minimum_variance_total(sums), iters=1000)
    edges = select_tree(cdata, independent, selection_epsilon(rho, d), rng)  # step 2
    log2 = measure(cdata, edges, sigma2, noise)  # step 3
    sums += [(float(np.sum(m.noisy_measurement)), sigma2**2 * np.size(m.noisy_measurement)) for m in log2]
    return MSTFit(estimate(cdata.domain, log1 + log2, minimum_variance_total(sums)), edges, comp, data.domain)
