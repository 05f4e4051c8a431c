"""AIM and MST through smartnoise-synth (which runs private-pgm's ``mbi`` for inference).

* MST (McKenna, Miklau & Sheldon 2021, "Winning the NIST Contest"): measure every 1-way marginal,
  select a maximum spanning tree of 2-way marginals with the exponential mechanism, measure them, and
  fit a graphical model with Private-PGM. Budget split rho/3 each.
* AIM (McKenna, Mullins, Sheldon & Miklau 2022, "AIM: An Adaptive and Iterative Mechanism"): measure
  1-way marginals, then per round select the worst-approximated workload marginal (exponential
  mechanism, 10% of the round's rho) and measure it (Gaussian, 90%) until rho is spent.

Both are rho-zCDP with rho = ``cdp_rho(epsilon, delta)`` (smartnoise-synth's own conversion through
OpenDP); the ledger records that rho and privlab's accountant converts it back to epsilon.
privlab calls the libraries' own ``MST`` / ``AIM`` procedures on an ``mbi`` dataset built from the
declared domain (their table transformer would infer categories from the private data). The noise
comes from OpenDP's sampler, which cannot be seeded: ``seed`` fixes the selection steps only.
``epsilon = inf`` runs the mechanism at :data:`NONPRIVATE_EPSILON` (noise std < 0.1 per cell).
"""

from __future__ import annotations

import contextlib
import io
import math
from typing import Any

import numpy as np

from privlab._validation import check_int, check_real
from privlab.accounting.zcdp import ZCDPLedger
from privlab.synth.generators.base import FittedGenerator, Generator, register
from privlab.synth.table import Table

NONPRIVATE_EPSILON = 1000.0
HINT = "pip install 'privlab[synth]' && pip install --no-deps smartnoise-synth==1.0.8"


def _libs() -> dict[str, Any]:
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        import mbi
        from snsynth.aim.aim import AIMSynthesizer
        from snsynth.mst.mst import MSTSynthesizer
        from snsynth.utils import cdp_rho
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"AIM and MST need smartnoise-synth and mbi ({HINT}): {exc}") from exc
    return {"mbi": mbi, "AIM": AIMSynthesizer, "MST": MSTSynthesizer, "cdp_rho": cdp_rho}


def _dataset(table: Table) -> Any:
    mbi = _libs()["mbi"]
    names = [f"c{j}" for j in range(len(table.domain.columns))]
    dom = mbi.Domain(names, list(table.domain.sizes))
    return mbi.Dataset({n: table.codes[:, j] for j, n in enumerate(names)}, dom)


def _codes(ds: Any, d: int) -> np.ndarray:
    return np.stack([np.asarray(ds.df[f"c{j}"]) for j in range(d)], axis=1)


class _Fitted(FittedGenerator):
    def __init__(self, table: Table, epsilon: float, delta: float, ledger: ZCDPLedger, model: Any, undo: Any) -> None:
        super().__init__(table, epsilon, delta, ledger)
        self.model, self.undo = model, undo

    def _sample(self, n: int, seed: int) -> np.ndarray:
        np.random.seed(seed)  # the libraries sample (and undo MST's compression) with numpy's global RNG
        with contextlib.redirect_stdout(io.StringIO()):
            ds = self.model.synthetic_data(rows=n)
            if self.undo is not None:
                ds = self.undo(ds)
        return _codes(ds, len(self.domain.columns))


def _rho(epsilon: float, delta: float) -> tuple[float, float]:
    eps = NONPRIVATE_EPSILON if math.isinf(epsilon) else epsilon
    return eps, float(_libs()["cdp_rho"](eps, delta))


@register
class MST(Generator):
    """MST (smartnoise-synth); rho/3 on 1-way marginals, rho/3 on tree selection, rho/3 on 2-way marginals."""

    name = "mst"

    def _fit(self, table: Table, epsilon: float, delta: float, seed: int) -> FittedGenerator:
        eps, rho = _rho(epsilon, delta)
        np.random.seed(seed)
        synth = _libs()["MST"](epsilon=eps, delta=delta)
        with contextlib.redirect_stdout(io.StringIO()):
            synth.MST(_dataset(table), eps, delta)
        ledger = ZCDPLedger(delta)
        ledger.record("mst.measure_1way", rho / 3, "Gaussian, every 1-way marginal")
        ledger.record("mst.select_tree", rho / 3, "exponential mechanism, d-1 tree edges")
        ledger.record("mst.measure_2way", rho / 3, "Gaussian, the tree's 2-way marginals")
        return _Fitted(table, epsilon, delta, ledger, synth.synthesizer, synth.undo_compress_fn)


@register
class AIM(Generator):
    """AIM (smartnoise-synth) on the ``degree``-way workload; ``rounds`` defaults to the library's 16 x
    columns. ``workload_column`` keeps only the workload marginals that contain that column (e.g. the
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
        eps, rho = _rho(epsilon, delta)
        np.random.seed(seed)
        synth = libs["AIM"](epsilon=eps, delta=delta, max_model_size=self.max_model_size, rounds=self.rounds)
        synth.rho = rho  # what the library's fit() sets before calling AIM()
        data = _dataset(table)
        workload = libs["AIM"].get_workload(data, degree=min(self.degree, len(table.domain.columns)), max_cells=10000)
        if self.workload_column is not None:  # the marginals the analyst cares about: those with this column
            col = f"c{table.domain.index(self.workload_column)}"
            workload = [cl for cl in workload if col in cl]
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
