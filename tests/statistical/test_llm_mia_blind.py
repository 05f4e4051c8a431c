"""On a fine-tuned small GPT the LLM attacks beat the text-only blind baseline (random split), and the
blind check fires on a deliberately shifted split (Duan et al. 2024). Seeds 0-2 checked; seed 0 runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from privlab.errors import DataUnavailableError
from privlab.llm.blind import blind_baseline
from privlab.llm.config import CanaryExperimentConfig, FineTuneConfig
from privlab.llm.experiment import build_data, build_model, split_documents
from privlab.llm.finetune import fine_tune
from privlab.llm.mia import llm_membership_inference


@pytest.fixture(scope="module")
def shakespeare():
    from privlab.data import load_shakespeare_text

    try:
        return load_shakespeare_text()
    except DataUnavailableError as exc:
        pytest.skip(str(exc))


def test_attacks_beat_blind_baseline_on_fine_tuned_gpt(shakespeare):
    cfg = CanaryExperimentConfig(
        corpus_chars=12_000,
        doc_chars=128,
        repetitions=(1,),
        per_level=1,
        pii=False,
        gpt_layers=1,
        gpt_embd=64,
        train=FineTuneConfig(steps=250, batch_size=16, lr=5e-3, seq_len=64),
    )
    data = build_data(cfg, shakespeare)
    lm = build_model(cfg, data)
    fine_tune(lm, torch.tensor(lm.tokenizer.encode(data.train_text)), cfg.train)
    n = min(len(data.members), len(data.nonmembers))
    res = llm_membership_inference(lm, data.members[:n], data.nonmembers[:n], n_bootstrap=100)
    blind = blind_baseline(data.members[:n], data.nonmembers[:n], warn=False)
    assert not blind.fires
    for name in ("loss", "min_k", "min_k_pp", "zlib"):
        m = res.metrics[name]
        assert m.auc_ci[0] > blind.metrics.auc_ci[1] or m.auc > blind.metrics.auc + 0.2, (
            name,
            m.auc,
            blind.metrics.auc,
        )
        assert m.auc > 0.65, name


def test_blind_check_fires_on_shifted_split_only(shakespeare):
    docs = split_documents(shakespeare, 256)
    rng = np.random.default_rng(0)
    head, tail = docs[: len(docs) // 10], docs[-len(docs) // 10 :]
    n = 80
    shifted = blind_baseline(
        [head[i] for i in rng.permutation(len(head))[:n]], [tail[i] for i in rng.permutation(len(tail))[:n]], warn=False
    )
    assert shifted.fires and shifted.metrics.auc > 0.7
    mixed = [docs[i] for i in rng.permutation(len(docs))[: 2 * n]]
    assert not blind_baseline(mixed[:n], mixed[n:], warn=False).fires
