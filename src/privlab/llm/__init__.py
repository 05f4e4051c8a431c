"""Language-model privacy: canaries and exposure, extraction, PII leakage games, LLM membership
inference, and DP / DP-LoRA fine-tuning of a real small LLM (SmolLM2-135M, offline).

Modules (one job each): :mod:`~privlab.llm.models` (loading), :mod:`~privlab.llm.tokenization`,
:mod:`~privlab.llm.canaries` and :mod:`~privlab.llm.pii` (planting secrets),
:mod:`~privlab.llm.scoring` (token log-probs), :mod:`~privlab.llm.exposure`,
:mod:`~privlab.llm.generation` and :mod:`~privlab.llm.extraction`, :mod:`~privlab.llm.pii_games`,
:mod:`~privlab.llm.mia` and :mod:`~privlab.llm.blind`, :mod:`~privlab.llm.finetune`,
:mod:`~privlab.llm.experiment` (the end-to-end canary experiment) and :mod:`~privlab.llm.report`.
See ``docs/llm.md``. Hugging Face models need the ``llm`` extra (``pip install privlab[llm]``).
"""

from privlab.llm.canaries import Canary, PlantedCorpus, digit_canaries, insert_canaries
from privlab.llm.config import DPSpec, FineTuneConfig
from privlab.llm.exposure import canary_exposure, exposure_from_rank, extrapolated_exposure
from privlab.llm.extraction import extract_canary, extraction_rates
from privlab.llm.finetune import fine_tune, perplexity
from privlab.llm.mia import llm_membership_inference
from privlab.llm.models import LanguageModel, load_causal_lm, load_smollm2, small_gpt
from privlab.llm.tokenization import CharTokenizer, HFTokenizer

__all__ = [
    "Canary",
    "CharTokenizer",
    "DPSpec",
    "FineTuneConfig",
    "HFTokenizer",
    "LanguageModel",
    "PlantedCorpus",
    "canary_exposure",
    "digit_canaries",
    "exposure_from_rank",
    "extract_canary",
    "extraction_rates",
    "extrapolated_exposure",
    "fine_tune",
    "insert_canaries",
    "llm_membership_inference",
    "load_causal_lm",
    "load_smollm2",
    "perplexity",
    "small_gpt",
]
