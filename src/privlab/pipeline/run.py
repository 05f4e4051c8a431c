"""``run(config)``: data -> targets -> reference models -> attacks -> audits -> report.

Stages are cached under ``<output_dir>/<name>/`` by the hash of the configuration they depend on:
re-running skips finished work, a killed run resumes at the unfinished stage, and a changed
config re-runs only the stages it affects. The report (JSON + HTML) is always rewritten.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from privlab._validation import check_int
from privlab.attacks import compute_signals, run_attacks
from privlab.audit.dp_training import audit_dp_training
from privlab.audit.optimizer_canaries import TEST as OPT_TEST
from privlab.audit.optimizer_canaries import audit_dp_optimizer
from privlab.fl.stage import federated_stage
from privlab.llm.pipeline import llm_stage
from privlab.pipeline.cache import StageEvent, record_stages, stage
from privlab.pipeline.config import RunConfig
from privlab.pipeline.stages import (
    Population,
    TrainedTarget,
    audit_spec,
    claimed,
    load_population,
    references_like,
    train_references,
    train_target,
)
from privlab.report import ModelEntry, PrivacyReport, attack_curves, render_html
from privlab.synth.stage import synthetic_stage
from privlab.unlearn.run import run_unlearning


@dataclass(frozen=True)
class RunResult:
    """Where the run's report went, and how long it took."""

    report_json: Path
    report_html: Path
    run_dir: Path
    seconds: float


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        tqdm.write(f"[privlab] {msg}")


def attack_deps(cfg: RunConfig, name: str) -> dict[str, Any]:
    """Everything an attack on target ``name`` depends on, and nothing else.

    Shared references (non-DP targets, or ``attack.dp_references`` off) copy the first target's
    architecture and use ``attack.train``: both are dependencies. References trained like a DP
    target depend on that target's own config instead (already in ``target_cfg``).
    """
    target = next(t for t in cfg.targets if t.name == name)
    like = cfg.attack.dp_references and target.dp is not None
    attack = asdict(cfg.attack)
    if target.dp is None:
        attack.pop("dp_references")  # only decides how DP targets are attacked
    if like:
        attack.pop("train")  # their references use the target's own training spec
    deps: dict[str, Any] = {
        "target": name,
        "target_cfg": [asdict(target)],
        "data": asdict(cfg.data),
        "attack": attack,
        "seed": cfg.seed,
    }
    if not like:
        deps["reference_arch"] = {"model": cfg.targets[0].model, "hidden": list(cfg.targets[0].hidden)}
    return deps


def attack_stage(
    cfg: RunConfig, target: TrainedTarget, pop: Population, run_dir: Path, ref_signals: Callable[[], Any]
) -> dict[str, Any]:
    """Membership inference against one target, cached as ``mia.json`` (with per-example scores).

    ``ref_signals`` is called only when the stage is not cached, so a re-run with every attack
    finished neither loads the reference models nor recomputes their signals. Returns the result
    without the per-example arrays (they stay in the cached file, named by ``per_example_scores``).
    """
    st = stage(run_dir, f"attack-{target.name}", attack_deps(cfg, target.name))
    if not st.done:
        st.begin()
        sig = compute_signals(target.model, pop.data)
        res = run_attacks(
            sig, pop.mask[0], ref_signals(), pop.mask[1:], attacks=list(cfg.attack.attacks), seed=cfg.seed
        )
        res.to_json(st.path / "mia.json")
        st.finish({a: float(m.auc) for a, m in res.metrics.items()})
    result: dict[str, Any] = st.read_json("mia.json")
    result.pop("membership", None)
    for entry in result.get("attacks", {}).values():
        entry.pop("scores", None)
    result["per_example_scores"] = str((st.path / "mia.json").relative_to(run_dir))
    like = references_like(cfg, target)
    result["references"] = {
        "count": cfg.attack.reference_models,
        "trained": f"like {target.name}: its architecture and training spec, DP-SGD-style (flat clipping "
        f"at its max_grad_norm, noise multiplier {target.noise_multiplier:.4g}, fixed-size batches)"
        if like
        else "with attack.train (non-private), architecture of the first target",
    }
    return result


AUDIT_TEST = (
    "white-box one-run audit (Steinke et al. 2023) of the target's own DP-SGD mechanism: a separate training "
    "with its sigma, q, steps, C and clipping mode through make_private's DPOptimizer, with Dirac gradient "
    "canaries handed to the optimizer as per-example gradients"
)


def audit_stage(
    cfg: RunConfig, t: TrainedTarget, pop: Population, run_dir: Path, progress: bool
) -> list[dict[str, Any]]:
    """Two one-run audits of the target's DP-SGD mechanism (its AuditSpec: sigma, q, steps, C, clipping)."""
    tc = next(x for x in cfg.targets if x.name == t.name)
    spec = audit_spec(tc, t, pop, cfg.seed)
    if spec is None:
        return []
    deps = {
        "target": asdict(tc),
        "audit": asdict(cfg.audit),
        "data": asdict(cfg.data),
        "seed": cfg.seed,
        "audits": ["dirac_optimizer", "probe_optimizer"],
    }
    st = stage(run_dir, f"audit-{t.name}", deps)
    if st.done:
        cached: list[dict[str, Any]] = st.read_json("audit.json")
        return cached
    st.begin()
    kw: dict[str, Any] = {"canaries": cfg.audit.canaries, "confidence": cfg.audit.confidence, "progress": progress}
    res = audit_dp_training(spec, **kw)
    # Second audit: probe canaries as training examples (the data path: loader, hooks, the model's own layers).
    opt_res = audit_dp_optimizer(spec, **kw)
    out = [
        res.audit.to_dict() | {"test": AUDIT_TEST, "verdict": res.verdict, "power_epsilon": res.power},
        opt_res.audit.to_dict()
        | {"method": "one_run_optimizer", "test": OPT_TEST, "verdict": opt_res.verdict, "power_epsilon": opt_res.power},
    ]
    st.write_json("audit.json", out)
    st.finish({"epsilon_lower_bound": res.audit.epsilon_lower_bound})
    return out


def _stage_message(e: StageEvent) -> str:
    return f"stage {e.stage}: reused (cached)" if e.status == "reused" else f"stage {e.stage}: computing ({e.reason})"


@contextlib.contextmanager
def fixed_threads(n: int) -> Iterator[None]:
    """Run torch's CPU kernels on exactly ``n`` intra-op threads inside (restored after).

    Matrix products and reductions split their sums by thread count (and MKL may use fewer
    threads under load), so the same training gives weights that differ in the last bits from
    one thread count to another, and attack AUCs that differ in the 6th-7th digit. A fixed
    count makes a re-run reproduce the report's numbers on the same machine and software.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run(cfg: RunConfig, *, progress: bool = True, quiet: bool = False, threads: int = 1) -> RunResult:
    """Execute every stage of ``cfg`` (reusing cached ones) and write the report.

    Logs each stage as it is reused or computed, and a summary at the end; on Ctrl-C
    (``KeyboardInterrupt``, re-raised) says that a re-run resumes from the finished stages.
    Computes on ``threads`` intra-op threads whatever the machine's default, so that re-runs
    give the same numbers (see :func:`fixed_threads`); the count is recorded in the report.
    """
    run_dir = Path(cfg.output_dir) / cfg.name
    check_int(threads, "threads", "run", low=1)
    with record_stages(lambda e: _log(_stage_message(e), quiet)) as events, fixed_threads(threads):
        try:
            res = _run(cfg, run_dir, progress, quiet)
        except KeyboardInterrupt:
            _log(f"interrupted; re-run to resume (finished stages are cached in {run_dir})", quiet)
            raise
    reused = [e.stage for e in events if e.status == "reused"]
    redone = [e.stage for e in events if e.status == "recomputed"]
    _log(f"stages reused: {', '.join(reused) or 'none'}; recomputed: {', '.join(redone) or 'none'}", quiet)
    return res


def _run(cfg: RunConfig, run_dir: Path, progress: bool, quiet: bool) -> RunResult:
    start = time.perf_counter()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(cfg.to_yaml())
    _log(f"run directory: {run_dir}", quiet)

    pop = load_population(cfg)
    _log(f"data: {cfg.data.dataset}, population {len(pop.data)}, targets train on {int(pop.mask[0].sum())}", quiet)

    targets = []
    for t in cfg.targets:
        tt = train_target(cfg, t, pop, run_dir, progress)
        c = claimed(tt)
        _log(
            f"target {t.name}: test accuracy {tt.utility['test_accuracy']:.4f}"
            + (f", claimed epsilon {c['epsilon']:.3f}" if c and isinstance(c["epsilon"], float) else ""),
            quiet,
        )
        targets.append(tt)

    report = PrivacyReport(title=f"privlab privacy report: {cfg.name}", config=cfg.to_dict())
    for tt in targets:
        report.models[tt.name] = ModelEntry(
            dp=tt.ledger is not None,
            utility=tt.utility,
            claimed=claimed(tt),
            ledger=tt.ledger.to_dict() if tt.ledger is not None else None,
        )

    if cfg.attack.attacks:
        cache: dict[str, Any] = {}

        def ref_signals_for(tt: TrainedTarget) -> Callable[[], Any]:
            like = tt if references_like(cfg, tt) else None
            key = tt.name if like is not None else ""

            def ref_signals() -> Any:  # trained (or loaded) once, and only if some attack needs them
                if key not in cache:
                    how = f"trained like {tt.name} (DP-SGD-style)" if like is not None else "attack.train"
                    _log(f"reference models: {cfg.attack.reference_models}, {how}", quiet)
                    models = train_references(cfg, pop, run_dir, progress, like)
                    cache[key] = compute_signals(models, pop.data)
                return cache[key]

            return ref_signals

        for tt in targets:
            report.attacks[tt.name] = attack_stage(cfg, tt, pop, run_dir, ref_signals_for(tt))
            curves = attack_curves(report.attacks[tt.name])
            _log(f"attacks on {tt.name}: " + ", ".join(f"{a} AUC {c['auc']:.3f}" for a, c in curves.items()), quiet)

    if cfg.audit.enabled:
        for tt in targets:
            audits = audit_stage(cfg, tt, pop, run_dir, progress)
            if audits:
                report.audits[tt.name] = audits
                for a in audits:
                    _log(
                        f"audit of {tt.name} [{a['method']}]: epsilon lower bound {a['epsilon_lower_bound']:.3f} "
                        f"at {a['confidence']} confidence (claimed {a['claimed_epsilon']:.3f})",
                        quiet,
                    )

    if cfg.llm is not None:
        report.sections["llm"] = llm_stage(cfg.llm, run_dir, cfg.seed, progress)
    if cfg.unlearning is not None:
        _log(f"unlearning: {', '.join(cfg.unlearning.methods)}", quiet)
        data_key = {"data": asdict(cfg.data), "n_ref": cfg.attack.reference_models}
        report.sections["unlearning"] = run_unlearning(
            cfg.unlearning, pop.members, pop.test, run_dir, seed=cfg.seed, data_key=data_key, progress=progress
        )
    if cfg.federated is not None:
        report.sections["federated"] = federated_stage(cfg.federated, run_dir, progress)
    if cfg.synthetic is not None:
        report.sections["synthetic"] = synthetic_stage(cfg.synthetic, run_dir, progress)

    report_json = report.save(run_dir / "report.json")
    report_html = run_dir / "report.html"
    render_html(report_json, report_html)
    secs = time.perf_counter() - start
    _log(f"report: {report_html.resolve()} ({secs:.0f} s)", quiet)
    return RunResult(report_json, report_html, run_dir, secs)
