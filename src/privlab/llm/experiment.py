"""The end-to-end canary experiment: plant secrets, fine-tune, then measure every leak.

1. Shakespeare (``privlab.data``), the first ``corpus_chars`` characters, cut into documents of
   about ``doc_chars`` characters at line breaks; a seeded half are members (training text), the
   other half non-members (membership inference, validation perplexity).
2. Digit canaries and faker PII sentences are inserted into the member text at each repetition
   count (:mod:`privlab.llm.canaries`, :mod:`privlab.llm.pii`).
3. The model (privlab's small GPT from scratch, or SmolLM2-135M fine-tuned) is trained on it with
   :func:`privlab.llm.finetune.fine_tune`, with or without DP; with DP the privacy unit is one
   window, one secret (all copies of a canary) or one document (``DPSpec.privacy_unit``).
4. Exposure per digit canary, extraction (greedy / beam / sampled) of every canary, the PII games,
   LLM membership inference with the blind baseline, and validation perplexity.
5. With ``cfg.reference`` set, a reference model (the pretrained model before fine-tuning, or one
   trained on public text the target never saw) calibrates exposure and the reference attack.
"""

from __future__ import annotations

import copy
import string
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from privlab.data import load_shakespeare_text
from privlab.errors import InvalidParameterError
from privlab.llm.blind import blind_baseline
from privlab.llm.canaries import Canary, digit_canaries, insert_canaries
from privlab.llm.config import CanaryExperimentConfig, DPSpec
from privlab.llm.exposure import canary_exposure, exposure_curve
from privlab.llm.extraction import extract_canary, extraction_rates
from privlab.llm.finetune import fine_tune, perplexity
from privlab.llm.mia import llm_membership_inference
from privlab.llm.models import LanguageModel, load_smollm2, small_gpt
from privlab.llm.pii import TEMPLATES, pii_canaries
from privlab.llm.pii_games import extraction_game, inference_game, reconstruction_game
from privlab.llm.tokenization import NO_UNIT, CharTokenizer

CHANCE_EXPOSURE = 1 / np.log(2)  # E[-log2 U] for U uniform: a model that knows nothing of the secret


def split_documents(text: str, doc_chars: int) -> list[str]:
    """Consecutive documents of at least ``doc_chars`` characters, cut at line breaks."""
    docs, cur = [], ""
    for line in text.split("\n"):
        cur = f"{cur}\n{line}" if cur else line
        if len(cur) >= doc_chars:
            docs.append(cur[: 2 * doc_chars])
            cur = ""
    return docs


@dataclass(frozen=True, eq=False)
class ExperimentData:
    """Member / non-member documents, the planted training text and the canaries.

    Per line of ``train_text``: ``line_canary`` (index of the canary it is a copy of, or -1) and
    ``line_document`` (index of the member document it comes from, or -1 for a canary copy).
    """

    members: list[str]
    nonmembers: list[str]
    train_text: str
    canaries: tuple[Canary, ...]
    line_canary: tuple[int, ...] = ()
    line_document: tuple[int, ...] = ()
    public_text: str = ""


def build_data(cfg: CanaryExperimentConfig, text: str | None = None) -> ExperimentData:
    """Documents, membership split and planted canaries of ``cfg`` (Shakespeare unless ``text``).

    With ``cfg.reference == "public"`` also the ``corpus_chars // 2`` characters after the corpus
    (disjoint from members and non-members) for the reference model.
    """
    full = text if text is not None else load_shakespeare_text()
    corpus = full[: cfg.corpus_chars]
    public = full[cfg.corpus_chars : cfg.corpus_chars + cfg.corpus_chars // 2] if cfg.reference == "public" else ""
    if cfg.reference == "public" and len(public) < cfg.corpus_chars // 2:
        raise InvalidParameterError(
            "The 'reference' parameter of CanaryExperimentConfig is 'public', which needs corpus_chars // 2 = "
            f"{cfg.corpus_chars // 2} characters of text after the experiment's corpus. Got {len(public)} instead."
        )
    docs = split_documents(corpus, cfg.doc_chars)
    rng = np.random.default_rng(cfg.seed)
    perm = rng.permutation(len(docs))
    half = len(docs) // 2
    members = [docs[i] for i in sorted(perm[:half])]
    nonmembers = [docs[i] for i in sorted(perm[half:])]
    canaries = digit_canaries(cfg.repetitions, cfg.per_level, cfg.n_digits, cfg.seed)
    if cfg.pii:
        canaries += pii_canaries(cfg.repetitions, 1, seed=cfg.seed)
    planted = insert_canaries("\n".join(members), canaries, cfg.seed)
    doc_of_line = iter([m for m, doc in enumerate(members) for _ in range(doc.count("\n") + 1)])
    line_document = tuple(-1 if c >= 0 else next(doc_of_line) for c in planted.line_canary)
    return ExperimentData(
        members, nonmembers, planted.text, tuple(canaries), planted.line_canary, line_document, public
    )


def unit_tokens(lm: LanguageModel, data: ExperimentData, privacy_unit: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token ids of the training text and, unless ``privacy_unit == "example"``, each token's unit.

    "secret": the tokens of every copy of canary k (with its line break) are unit k, other text
    ``NO_UNIT`` (window by window); "document": the same, and member document m is unit ``K + m``.
    The text is encoded line by line so that every token has one line (identical ids for the
    character tokenizer).
    """
    if privacy_unit == "example":
        return torch.tensor(lm.tokenizer.encode(data.train_text), dtype=torch.long), None
    lines = data.train_text.split("\n")
    ids: list[int] = []
    units: list[int] = []
    for j, line in enumerate(lines):
        toks = lm.tokenizer.encode(line + ("\n" if j < len(lines) - 1 else ""))
        c, m = data.line_canary[j], data.line_document[j]
        lab = c if c >= 0 else (len(data.canaries) + m if privacy_unit == "document" else NO_UNIT)
        ids += toks
        units += [lab] * len(toks)
    return torch.tensor(ids, dtype=torch.long), torch.tensor(units, dtype=torch.long)


def build_model(cfg: CanaryExperimentConfig, data: ExperimentData) -> LanguageModel:
    """A fresh small GPT over the data's characters, or SmolLM2-135M."""
    if cfg.model == "smollm2":
        return load_smollm2(block_size=max(cfg.train.seq_len, 128))
    extra = string.ascii_letters + string.digits + string.punctuation + " \n"
    tok = CharTokenizer.from_texts([data.train_text, *data.nonmembers, extra])
    return small_gpt(
        tok, block_size=max(cfg.train.seq_len, 64), n_layer=cfg.gpt_layers, n_embd=cfg.gpt_embd, seed=cfg.seed
    )


def _encodable(lm: LanguageModel, text: str) -> str:
    """``text`` without the characters a character tokenizer does not know (other tokenizers: as is)."""
    if isinstance(lm.tokenizer, CharTokenizer):
        known = set(lm.tokenizer.vocab)
        return "".join(c for c in text if c in known)
    return text


def reference_model(
    cfg: CanaryExperimentConfig, data: ExperimentData, lm: LanguageModel, progress: bool = False
) -> tuple[LanguageModel | None, dict[str, Any] | None]:
    """The reference model of ``cfg.reference`` (call before ``lm`` is trained) and how it was made.

    "base": a copy of ``lm`` as loaded (pretrained, not fine-tuned). "public": a fresh model of the
    same kind with ``lm``'s tokenizer, trained without DP with ``cfg.train``'s settings on
    ``data.public_text``.
    """
    if cfg.reference == "none":
        return None, None
    if cfg.reference == "base":
        return copy.deepcopy(lm), {"kind": "base", "model": lm.name}
    if isinstance(lm.tokenizer, CharTokenizer):
        ref = small_gpt(
            lm.tokenizer, block_size=lm.block_size, n_layer=cfg.gpt_layers, n_embd=cfg.gpt_embd, seed=cfg.seed + 1
        )
    else:
        ref = load_smollm2(block_size=lm.block_size)
    ids = torch.tensor(ref.tokenizer.encode(_encodable(ref, data.public_text)), dtype=torch.long)
    res = fine_tune(ref, ids, replace(cfg.train, dp=None, seed=cfg.train.seed + 1), progress=progress)
    info = {"kind": "public", "model": res.lm.name, "characters": len(data.public_text), "steps": res.steps}
    info["seconds"] = res.seconds
    return res.lm, info


def _exposure_block(
    lm: LanguageModel, digits: list[Canary], seed: int, reference: LanguageModel | None = None
) -> dict[str, Any]:
    exp = {c.secret: canary_exposure(lm, c.prefix, c.secret, seed=seed, reference=reference) for c in digits}
    by_reps: dict[int, list[Any]] = {}
    for c in digits:
        by_reps.setdefault(c.repetitions, []).append(exp[c.secret])
    return {
        "canaries": [{"secret": c.secret, "repetitions": c.repetitions, **asdict(exp[c.secret])} for c in digits],
        "curve": exposure_curve(by_reps),
        "chance": CHANCE_EXPOSURE,
    }


def evaluate(
    lm: LanguageModel, data: ExperimentData, cfg: CanaryExperimentConfig, reference: LanguageModel | None = None
) -> dict[str, Any]:
    """Exposure, extraction, PII games, membership inference (with blind baseline) and perplexity.

    With ``reference``: also ``exposure_reference`` (reference-calibrated exposure) and the
    "reference" membership attack.
    """
    digits = [c for c in data.canaries if c.kind == "digits"]
    pii = [c for c in data.canaries if c.kind != "digits"]
    ext = [extract_canary(lm, c, seed=cfg.seed) for c in data.canaries]
    n = min(cfg.mia_documents, len(data.members), len(data.nonmembers))
    rng = np.random.default_rng(cfg.seed + 1)
    mem = [data.members[i] for i in sorted(rng.choice(len(data.members), n, replace=False))]
    non = [data.nonmembers[i] for i in sorted(rng.choice(len(data.nonmembers), n, replace=False))]
    mia = llm_membership_inference(lm, mem, non, reference=reference, seed=cfg.seed)
    blind = blind_baseline(mem, non, seed=cfg.seed, warn=False)
    val_ids = torch.tensor(lm.tokenizer.encode("\n".join(data.nonmembers)), dtype=torch.long)
    out: dict[str, Any] = {
        "exposure": _exposure_block(lm, digits, cfg.seed),
        "extraction": {
            "rates": extraction_rates(ext),
            "rates_digits": extraction_rates([e for e in ext if e.canary.kind == "digits"]),
            "canaries": [
                {"kind": e.canary.kind, "repetitions": e.canary.repetitions, "secret": e.canary.secret, **e.extracted}
                for e in ext
            ],
        },
        "mia": {name: {"metrics": m.to_dict(), "scores": mia.scores[name].tolist()} for name, m in mia.metrics.items()},
        "membership": mia.membership.astype(int).tolist(),
        "blind": {"metrics": blind.metrics.to_dict(), "fires": blind.fires, "message": blind.message},
        "validation_perplexity": perplexity(lm, val_ids, cfg.train.seq_len),
    }
    if reference is not None:
        out["exposure_reference"] = _exposure_block(lm, digits, cfg.seed, reference)
    if pii:
        prompts = sorted({TEMPLATES[k][0].split("{")[0] for k in TEMPLATES})
        game = extraction_game(lm, pii, prompts, n_samples=16, seed=cfg.seed)
        out["pii"] = {
            "extraction": asdict(game),
            "reconstruction": reconstruction_game(lm, pii, seed=cfg.seed),
            "inference": inference_game(lm, pii, seed=cfg.seed),
        }
    return out


def run_canary_experiment(
    cfg: CanaryExperimentConfig, text: str | None = None, progress: bool = False
) -> dict[str, Any]:
    """Build the data, train (privately if ``cfg.train.dp``), evaluate; a JSON-able result."""
    data = build_data(cfg, text)
    lm = build_model(cfg, data)
    ref, ref_info = reference_model(cfg, data, lm, progress)
    ids, units = unit_tokens(lm, data, "example" if cfg.train.dp is None else cfg.train.dp.privacy_unit)
    res = fine_tune(lm, ids, cfg.train, progress=progress, token_units=units)
    out = evaluate(res.lm, data, cfg, ref)
    if ref_info is not None:
        out["reference"] = ref_info
    out["training"] = {
        "private": cfg.train.dp is not None,
        "privacy_unit": res.privacy_unit,
        "num_units": res.num_units,
        "epsilon": res.epsilon,
        "delta": res.delta,
        "noise_multiplier": res.noise_multiplier,
        "sample_rate": res.sample_rate,
        "steps": res.steps,
        "seconds": res.seconds,
        "final_loss": float(np.nanmean(res.losses[-20:])),
        "frozen": list(res.frozen),
        "untied": list(res.untied),
        "converted": list(res.converted),
        "trainable_parameters": res.trainable_parameters,
        "model": res.lm.name,
    }
    out["config"] = asdict(cfg)
    return out


def with_dp(cfg: CanaryExperimentConfig, dp: DPSpec | None) -> CanaryExperimentConfig:
    """The same experiment with ``train.dp = dp``."""
    return replace(cfg, train=replace(cfg.train, dp=dp))
