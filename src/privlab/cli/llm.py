"""``privlab llm``: language-model privacy (canaries, exposure, extraction, PII, membership inference)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer

from privlab.errors import DataUnavailableError, InvalidParameterError

app = typer.Typer(no_args_is_help=True, help=__doc__)


def _fail(flag: str, value: Any, expected: str) -> typer.Exit:
    typer.echo(f"error: --{flag} must be {expected}. Got {value!r} instead.", err=True)
    return typer.Exit(2)


@app.command("canaries")
def canaries(
    model: str = typer.Option("gpt", help="gpt (privlab's small GPT from scratch) or smollm2 (SmolLM2-135M)."),
    steps: int = typer.Option(1200, help="Training steps."),
    batch_size: int = typer.Option(32, help="Batch size (expected batch size with DP)."),
    lr: float = typer.Option(3e-3, help="AdamW learning rate."),
    seq_len: int = typer.Option(64, help="Tokens per training window."),
    corpus_chars: int = typer.Option(60_000, help="Shakespeare characters used (half are members)."),
    repetitions: str = typer.Option("1,4,16,64", help="Comma-separated repetition counts of the canaries."),
    epsilon: float | None = typer.Option(8.0, help="Also train with DP-SGD at this epsilon (0: non-private only)."),
    clipping: str = typer.Option("ghost", help="DP clipping: flat, per_layer or ghost."),
    privacy_unit: str = typer.Option(
        "example", help="What epsilon protects: example (one window), secret (all copies of a canary) or document."
    ),
    lora_r: int = typer.Option(0, help="LoRA rank (0: full fine-tuning)."),
    reference: str = typer.Option(
        "none",
        help="Reference model for calibrated exposure and the reference attack: none, base (the pretrained "
        "model; smollm2 only) or public (trained on Shakespeare text the target never saw).",
    ),
    seed: int = typer.Option(0, help="Seed of the split, the canaries and training."),
    out: Path = typer.Option(Path("privlab-runs/llm"), help="Directory for results.json and report.json."),
    quiet: bool = typer.Option(False, help="No progress bars."),
) -> None:
    """Plant canaries and PII, train (non-private and DP), measure exposure, extraction, PII games and MIA."""
    from privlab.llm.config import CanaryExperimentConfig, DPSpec, FineTuneConfig, LLMRunConfig
    from privlab.llm.pipeline import llm_stage
    from privlab.report import PrivacyReport, render_html

    try:
        reps = tuple(int(r) for r in repetitions.split(","))
    except ValueError:
        raise _fail("repetitions", repetitions, "comma-separated integers, e.g. 1,4,16,64") from None
    flags = {"steps": "steps", "batch_size": "batch-size", "lr": "lr", "seq_len": "seq-len", "lora_r": "lora-r"}
    flags |= {"corpus_chars": "corpus-chars", "model": "model", "target_epsilon": "epsilon", "clipping": "clipping"}
    flags |= {"repetitions": "repetitions", "seed": "seed", "privacy_unit": "privacy-unit", "reference": "reference"}
    try:
        train = FineTuneConfig(steps=steps, batch_size=batch_size, lr=lr, seq_len=seq_len, lora_r=lora_r, seed=seed)
        exp = CanaryExperimentConfig(
            model=model, corpus_chars=corpus_chars, repetitions=reps, train=train, seed=seed, reference=reference
        )
        dp = DPSpec(target_epsilon=epsilon, clipping=clipping, privacy_unit=privacy_unit) if epsilon else None
    except InvalidParameterError as exc:
        key = str(exc).split("'")[1] if "'" in str(exc) else ""
        typer.echo(f"error (--{flags.get(key, key)}): {exc}", err=True)
        raise typer.Exit(2) from exc
    out.mkdir(parents=True, exist_ok=True)
    try:
        run_cfg = LLMRunConfig(exp, dp)
        section = llm_stage(run_cfg, out, seed, progress=not quiet)
    except DataUnavailableError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    report = PrivacyReport(title="privlab language-model privacy report", config={"llm": asdict(run_cfg)})
    report.sections["llm"] = section
    path = report.save(out / "report.json")
    render_html(path, out / "report.html")
    (out / "results.json").write_text(json.dumps(section["data"], indent=1, default=str))
    for table in section["tables"]:
        typer.echo(f"\n{table['title']}")
        typer.echo("  " + " | ".join(table["columns"]))
        for row in table["rows"]:
            typer.echo("  " + " | ".join(_fmt(v) for v in row))
    typer.echo(f"\nreport (HTML): {(out / 'report.html').resolve()}")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, list) and len(v) == 2 and all(isinstance(x, float) for x in v):
        return f"[{v[0]:.3f}, {v[1]:.3f}]"
    return str(v)


@app.command("info")
def info(
    generate: str = typer.Option("", help="Also greedily continue this prompt with SmolLM2 (10 tokens)."),
) -> None:
    """Where SmolLM2-135M is installed, and whether it loads offline."""
    from privlab.llm.generation import greedy
    from privlab.llm.models import load_smollm2, smollm2_gguf_path

    try:
        path = smollm2_gguf_path()
    except DataUnavailableError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"SmolLM2 GGUF: {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    lm = load_smollm2()
    typer.echo(f"loaded {lm.name}: {lm.num_parameters() / 1e6:.1f}M parameters, context {lm.block_size}")
    if generate:
        ids = lm.tokenizer.encode(generate)
        typer.echo(generate + lm.tokenizer.decode(greedy(lm, ids, 10)))
