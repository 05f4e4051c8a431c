"""AIM through smartnoise-synth and MST on private-pgm's ``mbi`` (privlab's own three MST steps).

* MST (McKenna, Miklau & Sheldon 2021, "Winning the NIST Contest"): measure every 1-way marginal,
  select a maximum spanning tree of 2-way marginals with the exponential mechanism, measure them, and
  fit a graphical model with Private-PGM. Budget split rho/3 each. privlab runs these steps itself
  (:mod:`privlab.synth.generators.mst`): smartnoise-synth's ``MST`` hands the exact private row
  count to Private-PGM (``known_total``), an unbudgeted release under add/remove-one adjacency.
  Rare categories (noisy 1-way count below 3 sigma) are merged after step 1, as in the paper
  (:mod:`privlab.synth.generators.compress`, post-processing).
* AIM (McKenna, Mullins, Sheldon & Miklau 2022, "AIM: An Adaptive and Iterative Mechanism"): measure
  1-way marginals, then per round select the worst-approximated workload marginal (exponential
  mechanism, 10% of the round's rho) and measure it (Gaussian, 90%) until rho is spent.

Both are rho-zCDP with rho = ``cdp_rho(epsilon, delta)`` (smartnoise-synth's own conversion through
OpenDP); the ledger records that rho and privlab's accountant converts it back to epsilon.
privlab calls the library's ``AIM`` procedure on an ``mbi`` dataset built from the declared domain
(its table transformer would infer categories from the private data). The noise comes from
OpenDP's sampler, which cannot be seeded: ``seed`` fixes the selection steps only.
``epsilon = inf`` runs the mechanism at :data:`NONPRIVATE_EPSILON` (noise std < 0.1 per cell).
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np

from privlab._validation import check_choice, check_int, check_real
from privlab.accounting.zcdp import ZCDPLedger
from privlab.errors import InvalidParameterError
from privlab.synth.generators.base import FittedGenerator, Generator, register
from privlab.synth.generators.compress import DECOMPRESS, AttributeCompression
from privlab.synth.generators.mst import run_mst
from privlab.synth.table import Table

NONPRIVATE_EPSILON = 1000.0
HINT = "pip install 'privlab[synth]' && pip install --no-deps smartnoise-synth==1.0.8"


def _libs() -> dict[str, Any]:
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        import mbi
        from snsynth.aim.aim import AIMSynthesizer
        from snsynth.utils import cdp_rho
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"AIM and MST need smartnoise-synth and mbi ({HINT}): {exc}") from exc
    return {"mbi": mbi, "AIM": AIMSynthesizer, "cdp_rho": cdp_rho}


def _dataset(table: Table) -> Any:
    mbi = _libs()["mbi"]
    names = [f"c{j}" for j in range(len(table.domain.columns))]
    dom = mbi.Domain(names, list(table.domain.sizes))
    return mbi.Dataset({n: table.codes[:, j] for j, n in enumerate(names)}, dom)


def _codes(ds: Any, d: int) -> np.ndarray:
    return np.stack([np.asarray(ds.df[f"c{j}"]) for j in range(d)], axis=1)


Sampler = Callable[[int, np.random.Generator], Any]


class _Fitted(FittedGenerator):
    def __init__(
        self, table: Table, epsilon: float, delta: float, ledger: ZCDPLedger, model: Any, sampler: Sampler | None
    ) -> None:
        super().__init__(table, epsilon, delta, ledger)
        self.model, self.sampler = model, sampler
        self.edges: list[tuple[str, str]] = []  # MST's selected tree (mbi column names c0, c1, ...)
        self.compression: dict[str, AttributeCompression] = {}  # MST's per-column compression

    def _sample(self, n: int, seed: int) -> np.ndarray:
        np.random.seed(seed)  # mbi samples with numpy's global RNG
        with contextlib.redirect_stdout(io.StringIO()):
            if self.sampler is None:
                ds = self.model.synthetic_data(rows=n)
            else:  # MST: sample the compressed model, decompress with a seeded generator
                ds = self.sampler(n, np.random.default_rng(seed))
        return _codes(ds, len(self.domain.columns))


def _rho(epsilon: float, delta: float) -> tuple[float, float]:
    eps = NONPRIVATE_EPSILON if math.isinf(epsilon) else epsilon
    return eps, float(_libs()["cdp_rho"](eps, delta))


@register
class MST(Generator):
    """MST (McKenna, Miklau & Sheldon 2021) run by :func:`privlab.synth.generators.mst.run_mst` on ``mbi``:
    rho/3 on 1-way marginals, rho/3 on tree selection, rho/3 on 2-way marginals; the row count is
    estimated from the noisy marginals, never read from the data.

    ``compress`` applies the paper's domain compression (categories with noisy 1-way count below
    3 sigma merged after step 1; post-processing, no budget); ``decompress`` draws a merged category
    back ``"uniform"``-ly (paper) or proportionally to the ``"noisy"`` counts clipped at 0."""

    name = "mst"

    def __init__(self, compress: bool = True, decompress: str = "uniform") -> None:
        if not isinstance(compress, bool):
            raise InvalidParameterError(f"The 'compress' parameter of MST must be a bool. Got {compress!r} instead.")
        self.compress = compress
        self.decompress = check_choice(decompress, "decompress", "MST", DECOMPRESS)

    def _fit(self, table: Table, epsilon: float, delta: float, seed: int) -> FittedGenerator:
        _eps, rho = _rho(epsilon, delta)
        with contextlib.redirect_stdout(io.StringIO()):
            fit = run_mst(_dataset(table), rho, seed, compress=self.compress, decompress=self.decompress)
        ledger = ZCDPLedger(delta)
        ledger.record("mst.measure_1way", rho / 3, "Gaussian, every 1-way marginal")
        ledger.record("mst.select_tree", rho / 3, "exponential mechanism, d-1 tree edges")
        ledger.record("mst.measure_2way", rho / 3, "Gaussian, the tree's 2-way marginals")
        fitted = _Fitted(table, epsilon, delta, ledger, fit.model, fit.synthetic_data)
        fitted.edges = fit.edges
        fitted.compression = fit.compression
        return fitted


def check_rounds(rounds: int, n_oneway: int) -> None:
    """Refuse an AIM ``rounds`` that leaves (almost) nothing for the adaptive rounds.

    smartnoise-synth's AIM measures the k one-way marginals first, each at the per-round
    measurement budget 0.9 rho / rounds (sigma = sqrt(rounds / (1.8 rho))), so they take
    0.9 k / rounds of rho: with rounds <= 0.9 k they overspend and the fit fails (NaN noise scale),
    and with rounds <= k / 0.9 they take at least 81% of rho and only about one marginal is selected.
    """
    limit = n_oneway / 0.9
    if rounds <= limit:
        raise InvalidParameterError(
            f"The 'rounds' parameter of AIM must be greater than {limit:.1f} (= {n_oneway} one-way marginals / 0.9): "
            f"AIM measures each one-way marginal with 0.9 rho/rounds, so rounds={rounds} spends "
            f"{min(0.9 * n_oneway / rounds, 1.0):.0%} of rho before its first adaptive round. Got {rounds}; "
            f"leave it unset for the library's default of 16 x columns."
        )


@register
class AIM(Generator):
    """AIM (smartnoise-synth) on the ``degree``-way workload; ``rounds`` defaults to the library's 16 x
    columns and must exceed (one-way marginals) / 0.9 (:func:`check_rounds`, checked before the data
    is read). ``workload_column`` keeps only the workload marginals that contain that column (e.g. the
    label a downstream classifier predicts): AIM spends its rounds on the marginals the analyst asks for
    (its workload is public input, McKenna et al. 2022, Sec. 3)."""

    name = "aim"

    def __init__(
        self,
        rounds: int | None = None,
        max_model_size: float = 10.0,
        degree: int = 2,
        workload_column: str | None = None,
    ) -> None:
        self.rounds = None if rounds is None else check_int(rounds, "rounds", "AIM", low=1)
        self.max_model_size = check_real(max_model_size, "max_model_size", "AIM", low=0.0, low_open=True)
        self.degree = check_int(degree, "degree", "AIM", low=1)
        self.workload_column = workload_column

    def _fit(self, table: Table, epsilon: float, delta: float, seed: int) -> FittedGenerator:
        libs = _libs()
        d = len(table.domain.columns)
        names = [f"c{j}" for j in range(d)]
        shape = SimpleNamespace(domain=libs["mbi"].Domain(names, list(table.domain.sizes)))  # no data yet
        workload = libs["AIM"].get_workload(shape, degree=min(self.degree, d), max_cells=10000)
        if self.workload_column is not None:  # the marginals the analyst cares about: those with this column
            col = f"c{table.domain.index(self.workload_column)}"
            workload = [cl for cl in workload if col in cl]
        if not workload:
            raise InvalidParameterError(
                f"The 'degree' parameter of AIM gives no workload marginal with at most 10000 cells on this "
                f"domain (degree={self.degree}, workload_column={self.workload_column!r})."
            )
        rounds = self.rounds if self.rounds is not None else 16 * d  # the library's default
        check_rounds(rounds, len({c for cl in workload for c in cl}))
        eps, rho = _rho(epsilon, delta)
        np.random.seed(seed)
        synth = libs["AIM"](epsilon=eps, delta=delta, max_model_size=self.max_model_size, rounds=rounds)
        synth.rho = rho  # what the library's fit() sets before calling AIM()
        data = _dataset(table)
        with contextlib.redirect_stdout(io.StringIO()):
            synth.AIM(data, workload)
        ledger = ZCDPLedger(delta)
        ledger.record(
            "aim",
            rho,
            "1-way Gaussian measurements, then per round an exponential-mechanism selection "
            "(10%) and a Gaussian measurement (90%); the library spends exactly rho",
        )
        return _Fitted(table, epsilon, delta, ledger, synth.synthesizer, None)
