"""Run a :class:`~privlab.synth.config.SynthRunConfig`: one cached stage per (generator, epsilon).

Data (seeded): from Adult's training split (rows without missing values) a training table of
``train_size`` rows (the members), a disjoint non-member control of the same size, a reference
sample of twice that size (DOMIAS's population density) and an auxiliary pool of four times that
size (the shadow-model attacker's population, whose most outlying row is the target); Adult's test
split gives ``test_size`` rows for train-on-synthetic-test-on-real. Each release is scored by
:func:`evaluate_release`. AIM's workload is the 3-way marginals that contain the label (2-way ones
alone leave a classifier on the synthetic data near the majority rate: income depends on
interactions such as education x marital status).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from privlab.pipeline.cache import stage
from privlab.synth.adult import load_adult_table
from privlab.synth.config import SynthRunConfig
from privlab.synth.evaluation import (
    attribute_inference,
    dcr,
    domias,
    fidelity,
    outlier_rows,
    shadow_mia,
    utility,
)
from privlab.synth.generators import Generator, get_generator
from privlab.synth.table import Table

OUTLIER_SHARE = 0.1


@dataclass(frozen=True)
class SynthData:
    """The seeded split every release of one experiment is evaluated on."""

    train: Table
    control: Table
    reference: Table
    aux: Table
    test: Table


def load_data(cfg: SynthRunConfig) -> SynthData:
    """Adult split per the module docstring."""
    n = cfg.train_size
    pool = load_adult_table("train", cfg.columns, n=8 * n, seed=cfg.seed)
    perm = np.random.default_rng(cfg.seed).permutation(len(pool))
    parts = np.split(perm, [n, 2 * n, 4 * n])
    test = load_adult_table("test", cfg.columns, n=cfg.test_size, seed=cfg.seed)
    return SynthData(pool.subset(parts[0]), pool.subset(parts[1]), pool.subset(parts[2]), pool.subset(parts[3]), test)


def make_generator(cfg: SynthRunConfig, name: str, progress: bool = False) -> Generator:
    """The generator ``name`` with the config's options."""
    if name == "aim":
        return get_generator("aim", rounds=cfg.aim_rounds, degree=3, workload_column=cfg.label)
    if name == "dpvae":
        return get_generator("dpvae", epochs=cfg.dpvae_epochs, progress=progress)
    return get_generator(name)


def evaluate_release(
    cfg: SynthRunConfig, data: SynthData, name: str, epsilon: float, progress: bool = False
) -> dict[str, Any]:
    """Fit ``name`` at ``epsilon`` on the training table and measure the release."""
    gen = make_generator(cfg, name, progress)
    fitted = gen.fit(data.train, epsilon, cfg.delta, seed=cfg.seed)
    syn = fitted.sample(cfg.train_size, seed=cfg.seed)
    cand = Table(data.train.domain, np.concatenate([data.train.codes, data.control.codes]))
    outliers = np.zeros(len(cand), dtype=bool)
    outliers[outlier_rows(cand, max(2, int(OUTLIER_SHARE * len(cand))))] = True
    mia_all = domias(syn, data.train, data.control, data.reference, seed=cfg.seed)
    mia_out = domias(syn, data.train, data.control, data.reference, subset=outliers, seed=cfg.seed)
    result: dict[str, Any] = {
        "generator": name,
        "epsilon": epsilon,
        "private": gen.private,
        "budget": fitted.budget(),
        "fidelity": fidelity(data.train, syn),
        "utility": utility(data.train, syn, data.test, cfg.label),
        "domias": {"all": _metrics(mia_all), "outliers": _metrics(mia_out)},
        "attribute_inference": attribute_inference(data.train, data.control, syn, cfg.secret),
        "dcr": dcr(syn, data.train, data.control),
        "shadow_mia": None,
    }
    if name in cfg.shadow_generators:
        target = int(outlier_rows(data.aux, 1)[0])
        res = shadow_mia(
            gen, data.aux, target, epsilon=epsilon, delta=cfg.delta, train_size=cfg.train_size,
            n_shadow=cfg.shadow_models, n_eval=cfg.shadow_models, seed=cfg.seed, progress=progress,
        )  # fmt: skip
        result["shadow_mia"] = res.to_dict()
    return result


def _metrics(m: Any) -> dict[str, Any]:
    d: dict[str, Any] = m.to_dict()
    d.pop("roc")
    return d


def run_synthetic(cfg: SynthRunConfig, run_dir: Path, *, progress: bool = True) -> list[dict[str, Any]]:
    """Every (generator, epsilon) release of ``cfg``, each a cached stage under ``run_dir``."""
    data: SynthData | None = None
    results = []
    from privlab.synth.generators import GENERATORS

    # a non-private generator ignores epsilon: it is fitted once, reported at epsilon = inf
    jobs = [(g, e) for g in cfg.generators for e in (cfg.epsilons if GENERATORS[g].private else (math.inf,))]
    for name, eps in tqdm(jobs, desc="synthetic releases", disable=not progress):
        deps = {"synthetic": asdict(cfg) | {"generators": [name], "epsilons": [eps]}}
        deps["synthetic"]["shadow_generators"] = name in cfg.shadow_generators
        st = stage(run_dir, f"synth-{name}-eps{eps:g}" if math.isfinite(eps) else f"synth-{name}-epsinf", deps)
        if not st.done:
            st.begin()
            if data is None:
                data = load_data(cfg)
            st.write_json("release.json", evaluate_release(cfg, data, name, eps, progress))
            st.finish({"generator": name, "epsilon": eps})
        results.append(st.read_json("release.json"))
    return results
