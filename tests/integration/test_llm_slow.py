"""Slow: the key result on the small GPT (canaries memorised without DP, not with DP), and SmolLM2-135M
loaded offline from its package and fine-tuned with DP (full ghost and LoRA) for a few steps."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from privlab.errors import DataUnavailableError
from privlab.llm.config import CanaryExperimentConfig, DPSpec, FineTuneConfig, smollm2_canary_config
from privlab.llm.experiment import CHANCE_EXPOSURE, run_canary_experiment, with_dp

pytestmark = pytest.mark.slow


def _exposure(r, reps, key="exposure"):
    c = r[key]["curve"]
    return (c[reps] if reps in c else c[str(reps)])["mean"]


def _extracted(r, min_reps=1):
    return sum(
        c["greedy"] or c["beam"] or c["sample"] for c in r["extraction"]["canaries"] if c["repetitions"] >= min_reps
    )


def test_key_result_small_gpt():
    try:
        base = CanaryExperimentConfig(train=FineTuneConfig(steps=1200, batch_size=32, lr=3e-3, seq_len=64))
        plain = run_canary_experiment(base)
    except DataUnavailableError as exc:
        pytest.skip(str(exc))
    dp_train = FineTuneConfig(steps=400, batch_size=128, lr=3e-3, seq_len=64)
    dp_cfg = with_dp(replace(base, train=dp_train), DPSpec(target_epsilon=8.0))
    private = run_canary_experiment(dp_cfg)
    top = math.log2(10**base.n_digits)
    assert _exposure(plain, 16) > 0.6 * top and _exposure(plain, 64) > 0.8 * top
    assert _extracted(plain, 16) >= 3
    assert private["training"]["epsilon"] <= 8.0 + 1e-6
    assert _exposure(private, 16) < CHANCE_EXPOSURE + 1.5
    assert _extracted(private) == 0
    assert private["validation_perplexity"] < 2.0 * plain["validation_perplexity"]


def test_key_result_smollm2():
    """SmolLM2-135M fine-tuned on planted text: memorised without DP, not with DP-LoRA at epsilon 8.

    The configuration of ``benchmarks/llm/run.py --parts smollm2 --smollm2-steps 40`` with 20 + 20
    MIA documents; the pretrained model is the reference.
    """
    base = smollm2_canary_config(steps=40, mia_documents=20, reference="base")
    try:
        plain = run_canary_experiment(base)
    except DataUnavailableError as exc:
        pytest.skip(str(exc))
    dp = DPSpec(target_epsilon=8.0)
    private = run_canary_experiment(replace(base, train=replace(base.train, lora_r=8, lr=1e-3, dp=dp)))
    top = math.log2(10**base.n_digits)
    assert _exposure(plain, 64) > 0.8 * top and _extracted(plain, 64) == 1
    assert private["training"]["epsilon"] <= 8.0 + 1e-6
    assert _exposure(private, 64) < CHANCE_EXPOSURE + 2.0 and _extracted(private) == 0
    assert private["validation_perplexity"] < 1.6 * plain["validation_perplexity"]
    # calibrated by the pretrained model: the memorised canary stays on top, the private one does not
    assert _exposure(plain, 64, "exposure_reference") > 0.8 * top
    assert _exposure(private, 64, "exposure_reference") < CHANCE_EXPOSURE + 3.0


@pytest.fixture(scope="module")
def smollm2():
    from privlab.llm.models import load_smollm2

    try:
        return load_smollm2(block_size=128)
    except DataUnavailableError as exc:
        pytest.skip(str(exc))


def test_smollm2_loads_offline_and_generates(smollm2):
    from privlab.llm.generation import greedy

    assert 130e6 < smollm2.num_parameters() < 140e6
    tok = smollm2.tokenizer
    out = tok.decode(greedy(smollm2, tok.encode("The capital of France is"), 3))
    assert "Paris" in out


@pytest.mark.parametrize("lora", [8, 0])
def test_smollm2_dp_fine_tune_few_steps(smollm2, lora):
    import copy

    from privlab.llm.finetune import fine_tune

    lm = copy.deepcopy(smollm2)
    ids = torch.tensor(lm.tokenizer.encode("my secret number is 1234. " * 200))
    cfg = FineTuneConfig(steps=2, batch_size=4, seq_len=32, lr=1e-4, lora_r=lora, dp=DPSpec(target_epsilon=8.0))
    res = fine_tune(lm, ids, cfg)
    assert res.epsilon is not None and res.epsilon <= 8.0 + 1e-6
    assert all(math.isfinite(x) for x in res.losses if not math.isnan(x))
    if not lora:
        # every LlamaRMSNorm (2 per layer + final = 61) trained as torch's RMSNorm; LM head stays tied
        assert len(res.converted) == 61 and not res.frozen and not res.untied
