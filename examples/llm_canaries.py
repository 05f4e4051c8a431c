"""Plant canaries in Shakespeare, train privlab's small GPT with and without DP, measure the leaks.

Run: OMP_NUM_THREADS=1 python examples/llm_canaries.py   (about 3 minutes on 2 cores; more steps
memorise more: benchmarks/llm/run.py uses 1200 non-private steps)
"""

from privlab.llm.config import CanaryExperimentConfig, DPSpec, FineTuneConfig
from privlab.llm.experiment import run_canary_experiment, with_dp

base = CanaryExperimentConfig(
    corpus_chars=30_000,
    repetitions=(1, 4, 16, 64),
    train=FineTuneConfig(steps=400, batch_size=32, lr=3e-3, seq_len=64),
    reference="public",  # a second small GPT trained on Shakespeare the target never saw
)
runs = {
    "non-private": base,
    "DP eps=8": with_dp(base, DPSpec(target_epsilon=8.0, clipping="ghost")),
}
for label, cfg in runs.items():
    r = run_canary_experiment(cfg)
    curve = {k: round(v["mean"], 2) for k, v in r["exposure"]["curve"].items()}
    extracted = {k: v["sample"] for k, v in r["extraction"]["rates"].items()}
    aucs = {n: round(a["metrics"]["auc"], 3) for n, a in r["mia"].items()}
    print(f"\n{label}: epsilon {r['training']['epsilon']}, validation perplexity {r['validation_perplexity']:.2f}")
    print(f"  exposure (bits, max {r['exposure']['canaries'][0]['max_exposure']:.1f}) by repetitions: {curve}")
    print(f"  fraction extracted by sampling: {extracted}")
    calibrated = {k: round(v["mean"], 2) for k, v in r["exposure_reference"]["curve"].items()}
    print(f"  reference-calibrated exposure: {calibrated}")
    print(f"  MIA AUC (reference = target vs reference model): {aucs}; {r['blind']['message']}")
