"""The ``llm:`` section of a ``privlab run`` config (built strictly by the pipeline's ``_build``).

```yaml
llm:
  experiment:            # privlab.llm.experiment.CanaryExperimentConfig
    model: gpt           # gpt (privlab's small GPT, from scratch) | smollm2 (SmolLM2-135M, fine-tuned)
    reference: public    # none | base (pretrained model, smollm2 only) | public (trained on unseen text)
    corpus_chars: 60000  # Shakespeare characters; half the documents are members
    repetitions: [1, 4, 16, 64]
    train: {steps: 1200, batch_size: 32, lr: 0.003, seq_len: 64}
  dp:                    # the private run beside the non-private one (null: non-private only)
    target_epsilon: 8.0
    clipping: ghost
    privacy_unit: example  # example (one window) | secret (all copies of a canary) | document
```
"""

from __future__ import annotations

from dataclasses import dataclass, field

from privlab._validation import check_choice, check_int, check_real
from privlab.dp.lora import check_target_names
from privlab.errors import InvalidParameterError

CLIPPING = ("flat", "per_layer", "ghost")
MODEL_NAMES = ("gpt", "smollm2")
DEFAULT_REPETITIONS = (1, 4, 16, 64)
PRIVACY_UNITS = ("example", "secret", "document")
REFERENCES = ("none", "base", "public")


@dataclass(frozen=True)
class DPSpec:
    """What the guarantee depends on: epsilon, delta (default ``1 / (10 N)``), clipping norm, mode, unit.

    ``privacy_unit`` is what epsilon protects (McMahan et al. 2018): "example" (one training window),
    "secret" (every copy of a planted canary together; other text window by window) or "document"
    (every window of a source document, and every copy of a canary, together). With a unit other than
    "example", units are Poisson-sampled and each sampled unit gives one window (N = number of units);
    ``per_unit="all"`` gives all its windows instead, their summed gradient clipped to C (needs
    ``clipping="flat"``, which materialises per-window gradients: memory grows with the batch).
    """

    target_epsilon: float = 8.0
    delta: float | None = None
    max_grad_norm: float = 1.0
    clipping: str = "ghost"
    accountant: str = "pld"
    privacy_unit: str = "example"
    per_unit: str = "one"

    def __post_init__(self) -> None:
        check_real(self.target_epsilon, "target_epsilon", "DPSpec", low=0.0, low_open=True)
        if self.delta is not None:
            check_real(self.delta, "delta", "DPSpec", low=0.0, high=1.0, low_open=True, high_open=True)
        check_real(self.max_grad_norm, "max_grad_norm", "DPSpec", low=0.0, low_open=True)
        check_choice(self.clipping, "clipping", "DPSpec", CLIPPING)
        check_choice(self.accountant, "accountant", "DPSpec", ("pld", "rdp"))
        check_choice(self.privacy_unit, "privacy_unit", "DPSpec", PRIVACY_UNITS)
        check_choice(self.per_unit, "per_unit", "DPSpec", ("one", "all"))
        if self.per_unit == "all" and (self.clipping != "flat" or self.privacy_unit == "example"):
            raise InvalidParameterError(
                "The 'per_unit' parameter of DPSpec can be 'all' only with clipping='flat' and a privacy_unit "
                f"other than 'example'. Got clipping={self.clipping!r}, privacy_unit={self.privacy_unit!r} instead."
            )


@dataclass(frozen=True)
class FineTuneConfig:
    """Optimisation settings (they do not change the guarantee; ``steps`` and ``batch_size`` do with DP).

    ``lora_r > 0`` trains rank-``lora_r`` LoRA adapters only, on the Linear layers named by
    ``lora_targets`` (module-name suffixes; empty: q/v projections, or privlab GPT's ``qkv`` and
    ``proj``). ``lora_targets`` with ``lora_r=0`` is refused rather than ignored.
    """

    steps: int = 200
    batch_size: int = 16
    seq_len: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    lora_r: int = 0
    lora_alpha: int = 16
    lora_targets: tuple[str, ...] = ()
    seed: int = 0
    dp: DPSpec | None = None

    def __post_init__(self) -> None:
        owner = "FineTuneConfig"
        check_int(self.steps, "steps", owner, low=1)
        check_int(self.batch_size, "batch_size", owner, low=1)
        check_int(self.seq_len, "seq_len", owner, low=2)
        check_real(self.lr, "lr", owner, low=0.0, low_open=True)
        check_real(self.weight_decay, "weight_decay", owner, low=0.0)
        check_int(self.lora_r, "lora_r", owner, low=0)
        check_int(self.lora_alpha, "lora_alpha", owner, low=1)
        check_target_names(self.lora_targets, "lora_targets", owner, allow_empty=True)
        if self.lora_targets and self.lora_r == 0:
            raise InvalidParameterError(
                f"The 'lora_targets' parameter of {owner} can be given only with lora_r > 0 (lora_r=0 trains the "
                f"whole model, without adapters, so the targets would be ignored). Got lora_targets="
                f"{self.lora_targets!r} with lora_r=0 instead."
            )
        check_int(self.seed, "seed", owner, low=0)


@dataclass(frozen=True)
class CanaryExperimentConfig:
    """One canary experiment; ``train.dp`` decides whether it is private.

    ``reference`` is the model the reference attacks calibrate against (Carlini et al. 2021 Sec. 6.2;
    Mireshghallah et al. 2022): "none"; "base", the pretrained model before fine-tuning (needs
    ``model="smollm2"``); or "public", the same architecture trained without DP and with the same
    ``train`` settings on public text the target never saw (the ``corpus_chars // 2`` characters of
    the corpus after the experiment's, no canaries). With a reference, the result also carries the
    reference-calibrated exposure and the "reference" membership attack.
    """

    model: str = "gpt"
    corpus_chars: int = 60_000
    doc_chars: int = 256
    repetitions: tuple[int, ...] = DEFAULT_REPETITIONS
    per_level: int = 2
    n_digits: int = 4
    pii: bool = True
    mia_documents: int = 100
    gpt_layers: int = 2
    gpt_embd: int = 128
    train: FineTuneConfig = field(default_factory=lambda: FineTuneConfig(steps=300, batch_size=32, lr=3e-3))
    seed: int = 0
    reference: str = "none"

    def __post_init__(self) -> None:
        owner = "CanaryExperimentConfig"
        check_choice(self.model, "model", owner, MODEL_NAMES)
        check_choice(self.reference, "reference", owner, REFERENCES)
        if self.reference == "base" and self.model != "smollm2":
            raise InvalidParameterError(
                "The 'reference' parameter of CanaryExperimentConfig can be 'base' (the pretrained model) only "
                f"with model='smollm2'; model={self.model!r} is trained from scratch. Use 'public' instead."
            )
        check_int(self.corpus_chars, "corpus_chars", owner, low=2000)
        check_int(self.doc_chars, "doc_chars", owner, low=16)
        check_int(self.per_level, "per_level", owner, low=1)
        check_int(self.n_digits, "n_digits", owner, low=1, high=9)
        check_int(self.mia_documents, "mia_documents", owner, low=10)
        check_int(self.gpt_layers, "gpt_layers", owner, low=1)
        check_int(self.gpt_embd, "gpt_embd", owner, low=8)
        check_int(self.seed, "seed", owner, low=0)
        for r in self.repetitions:
            check_int(r, "repetitions", owner, low=1)


@dataclass(frozen=True)
class LLMRunConfig:
    """A non-private canary experiment and, with ``dp``, the same experiment trained with DP-SGD."""

    experiment: CanaryExperimentConfig = field(default_factory=CanaryExperimentConfig)
    dp: DPSpec | None = field(default_factory=DPSpec)


def smollm2_canary_config(
    steps: int = 40, mia_documents: int = 40, reference: str = "base", seed: int = 0
) -> CanaryExperimentConfig:
    """The SmolLM2-135M canary setup of ``benchmarks/llm/run.py --parts smollm2`` and its slow test.

    15,000 characters of member text with one digit canary at 1 / 16 / 64 copies (no PII), full
    fine-tuning for ``steps`` steps of batch 8 x 64 tokens at AdamW lr 1e-4.
    """
    return CanaryExperimentConfig(
        model="smollm2",
        corpus_chars=30_000,
        repetitions=(1, 16, 64),
        per_level=1,
        pii=False,
        mia_documents=mia_documents,
        train=FineTuneConfig(steps=steps, batch_size=8, lr=1e-4, seq_len=64),
        seed=seed,
        reference=reference,
    )
