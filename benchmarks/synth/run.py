"""Synthetic-data benchmark: every generator x epsilon in {0.5, 1, 4, 16, inf} on Adult.

Each release is fitted on the same 3,000-row Adult training table and scored for fidelity (k-way
marginal TVD), utility (train on synthetic, test on 2,000 real test rows; logistic regression on
income, beside train-on-real in the same run), and leakage (DOMIAS on all candidates and on the 10%
most outlying, linear-reconstruction attribute inference of ``sex`` vs the non-member control and
the prior, DCR; the shadow-model attack on an outlier target for the generators in
``--shadow``). Writes ``results/<generator>_eps<epsilon>.json`` (with the machine description and
the wall time of the release), ``results/summary.json`` and ``results/frontier.svg``. Non-private
generators ignore epsilon and run once (epsilon = inf). Run from the repository root:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/synth/run.py            # over 1 h on 2 shared cores
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/synth/run.py --quick    # smoke run (~2 min)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/synth/run.py --generators aim --epsilons 1 4  # a subset
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict
from pathlib import Path

from privlab.report.environment import environment
from privlab.synth.config import SynthRunConfig
from privlab.synth.experiment import evaluate_release, load_data
from privlab.synth.generators import GENERATORS
from privlab.synth.section import frontier_figure

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small tables, two epsilons, no AIM")
    ap.add_argument("--shadow", nargs="*", default=["bayesnet", "copula"], help="generators given the shadow attack")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--generators", nargs="*", default=None, help="re-run only these (others' results are kept)")
    ap.add_argument("--summary-only", action="store_true", help="rebuild summary.json and frontier.svg only")
    ap.add_argument(
        "--epsilons", nargs="*", type=float, default=None, help="re-run only these of the epsilons (e.g. 1 inf)"
    )
    args = ap.parse_args()
    if args.quick:
        cfg = SynthRunConfig(
            generators=("mst", "dpvae", "bayesnet", "copula"), epsilons=(1.0, math.inf), train_size=300,
            test_size=500, shadow_models=6, shadow_generators=tuple(args.shadow), dpvae_epochs=3,
        )  # fmt: skip
    else:
        cfg = SynthRunConfig(
            epsilons=(0.5, 1.0, 4.0, 16.0, math.inf), train_size=3000, shadow_generators=tuple(args.shadow)
        )
    wanted = set(cfg.epsilons) if args.epsilons is None else set(args.epsilons)
    if not wanted <= set(cfg.epsilons):
        ap.error(f"--epsilons must be among {list(cfg.epsilons)}; got {sorted(wanted)}")
    args.out.mkdir(parents=True, exist_ok=True)
    data = None if args.summary_only else load_data(cfg)
    machine = environment()
    for name in [] if args.summary_only else (args.generators or cfg.generators):
        for eps in [e for e in cfg.epsilons if e in wanted] if GENERATORS[name].private else (math.inf,):
            start = time.perf_counter()
            res = evaluate_release(cfg, data, name, eps)
            res["seconds"] = time.perf_counter() - start
            res["machine"] = machine
            res["config"] = asdict(cfg)
            tag = "inf" if math.isinf(eps) else f"{eps:g}"
            text = json.dumps(json.loads(json.dumps(res, default=str).replace("Infinity", '"inf"')), indent=2)
            (args.out / f"{name}_eps{tag}.json").write_text(text + "\n")
            sh = res["shadow_mia"]
            print(
                f"{name:>9} eps {tag:>4}: {res['seconds']:6.1f} s  eps accounted {res['budget']['epsilon']!s:.6}  "
                f"TVD2 {res['fidelity']['tvd_2way']:.3f}  TSTR acc {res['utility']['synthetic']['accuracy']:.3f} "
                f"(real {res['utility']['real']['accuracy']:.3f})  "
                f"DOMIAS-out AUC {res['domias']['outliers']['auc']:.3f}  "
                f"AI adv {res['attribute_inference']['advantage_over_control']:+.3f}"
                + (f"  shadow AUC {sh['auc']:.3f}" if sh else ""),
                flush=True,
            )
    results = [json.loads(p.read_text()) for p in sorted(args.out.glob("*_eps*.json"))]
    summary = [
        {
            "generator": r["generator"], "epsilon": r["epsilon"], "epsilon_accounted": r["budget"]["epsilon"],
            "seconds": r["seconds"], **r["fidelity"], "tstr_accuracy": r["utility"]["synthetic"]["accuracy"],
            "tstr_auc": r["utility"]["synthetic"]["auc"], "trtr_accuracy": r["utility"]["real"]["accuracy"],
            "domias_auc": r["domias"]["all"]["auc"], "domias_outliers_auc": r["domias"]["outliers"]["auc"],
            "domias_outliers_auc_ci": r["domias"]["outliers"]["auc_ci"],
            "shadow_auc": None if not r["shadow_mia"] else r["shadow_mia"]["auc"],
            "shadow_auc_ci": None if not r["shadow_mia"] else r["shadow_mia"]["auc_ci"],
            "ai_members": r["attribute_inference"]["accuracy_members"],
            "ai_control": r["attribute_inference"]["accuracy_control"],
            "ai_prior": r["attribute_inference"]["accuracy_prior"],
            "dcr_closer_to_train": r["dcr"]["closer_to_train"],
        }
        for r in results
    ]  # fmt: skip
    (args.out / "summary.json").write_text(json.dumps({"machine": machine, "releases": summary}, indent=2) + "\n")
    (args.out / "frontier.svg").write_text(frontier_figure(results))
    print(f"wrote {len(results)} releases to {args.out}")


if __name__ == "__main__":
    main()
