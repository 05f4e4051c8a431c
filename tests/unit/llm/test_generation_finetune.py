"""Decoding, extraction, and (DP) fine-tuning of the small GPT and of a tiny random LLaMA."""

from __future__ import annotations

import math

import pytest
import torch

from privlab.dp.validation import module_problems
from privlab.errors import UnsupportedModuleError
from privlab.llm.canaries import Canary
from privlab.llm.config import DPSpec, FineTuneConfig
from privlab.llm.extraction import extract_canary, extraction_rates
from privlab.llm.finetune import fine_tune, perplexity, prepare_for_dp
from privlab.llm.generation import beam, greedy, sample
from privlab.llm.models import CausalLMLogits, LanguageModel, small_gpt
from privlab.llm.scoring import continuation_logprob
from privlab.llm.tokenization import CharTokenizer, HFTokenizer, encode_pieces, token_windows

from .test_scoring_exposure import _peaked
from .toy import bigram_lm


def test_char_tokenizer_roundtrip_and_errors():
    tok = CharTokenizer.from_texts(["hello world", "123"])
    assert tok.decode(tok.encode("hold 321")) == "hold 321"
    assert encode_pieces(tok, ["he", "llo"]) == tok.encode("hello")
    with pytest.raises(Exception, match="'text' parameter"):
        tok.encode("hello?")
    w = token_windows(torch.arange(10), 4)
    assert w.shape == (2, 5) and w[1, 0] == 4


def test_greedy_beam_sample_on_known_model():
    lm = _peaked("2718", 8.0)
    pre = lm.tokenizer.encode("pin: ")
    assert lm.tokenizer.decode(greedy(lm, pre, 4)) == "2718"
    assert lm.tokenizer.decode(beam(lm, pre, 4, 3)) == "2718"
    s1 = sample(lm, pre, 4, 8, seed=1)
    assert s1 == sample(lm, pre, 4, 8, seed=1) and len(s1) == 8
    res = extract_canary(lm, Canary("pin: ", "2718", ".", 4))
    assert res.extracted == {"greedy": True, "beam": True, "sample": True} and res.sample_rate > 0.9
    assert extraction_rates([res])[4]["greedy"] == 1.0
    flat = bigram_lm(torch.zeros(40, 40))
    assert not extract_canary(flat, Canary("pin: ", "2718", ".", 4), n_samples=8).extracted["greedy"]


def test_beam_finds_a_sequence_at_least_as_likely_as_greedy():
    g = torch.Generator().manual_seed(0)
    lm = bigram_lm(2 * torch.randn(40, 40, generator=g))
    pre = lm.tokenizer.encode("a")
    gr, bm = greedy(lm, pre, 5), beam(lm, pre, 5, 8)
    lp = continuation_logprob(lm, pre, [gr, bm])
    assert lp[1] >= lp[0] - 1e-5


TEXT = ("to be or not to be that is the question " * 40).strip()


def _gpt(seed=0):
    tok = CharTokenizer.from_texts([TEXT])
    return small_gpt(tok, block_size=32, n_layer=1, n_head=2, n_embd=32, seed=seed)


@pytest.mark.parametrize("clipping", ["ghost", "flat"])
def test_dp_fine_tune_small_gpt_accounts_and_learns(clipping):
    lm = _gpt()
    ids = torch.tensor(lm.tokenizer.encode(TEXT))
    before = perplexity(lm, ids, 32)
    cfg = FineTuneConfig(
        steps=30, batch_size=16, seq_len=32, lr=1e-2, dp=DPSpec(target_epsilon=8.0, clipping=clipping, accountant="rdp")
    )
    res = fine_tune(lm, ids, cfg)
    assert res.steps == 30 and res.epsilon is not None and res.epsilon <= 8.0 + 1e-6
    assert res.noise_multiplier is not None and res.noise_multiplier > 0
    assert res.delta == pytest.approx(1 / (10 * len(token_windows(ids, 32))))
    assert perplexity(res.lm, ids, 32) < before  # DP still learns this very repetitive text
    assert not res.frozen and not res.untied  # the small GPT needs no adaptation


def test_lora_dp_fine_tune_trains_adapters_only():
    lm = _gpt()
    ids = torch.tensor(lm.tokenizer.encode(TEXT))
    cfg = FineTuneConfig(steps=5, batch_size=8, seq_len=32, lora_r=4, dp=DPSpec(target_epsilon=4.0, accountant="rdp"))
    res = fine_tune(lm, ids, cfg)
    names = [n for n, p in res.lm.module.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    assert res.trainable_parameters < lm.num_parameters() / 4 and res.epsilon is not None


def _tiny_llama():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    return LanguageModel(CausalLMLogits(hf), HFTokenizer(None), "tiny-llama", 64)


def test_llama_layers_refused_by_dp_and_adapted():
    lm = _tiny_llama()
    problems = module_problems(lm.module)
    assert any("LlamaRMSNorm" in p for p in problems)  # what privlab.dp refuses as is
    hf = lm.module.hf
    assert hf.lm_head.weight is hf.model.embed_tokens.weight
    gains = {n: p for n, p in hf.named_parameters() if "norm" in n}
    x = torch.randint(0, 64, (2, 10))
    before = lm.module(x)
    adapted = prepare_for_dp(lm.module, "ghost")
    # every LlamaRMSNorm (2 per layer + the final one) is now torch's RMSNorm with the same gain Parameter
    assert len(adapted.converted) == 5 and adapted.frozen == []
    assert all(isinstance(hf.get_submodule(n.removeprefix("hf.")), torch.nn.RMSNorm) for n in adapted.converted)
    assert {n: p for n, p in hf.named_parameters() if "norm" in n} == gains
    assert torch.allclose(lm.module(x), before, atol=1e-6)
    # the tied embedding / LM head weight stays tied: ghost clipping takes its joint norm
    assert adapted.untied == [] and hf.lm_head.weight is hf.model.embed_tokens.weight
    assert not module_problems(lm.module)


def test_rmsnorm_with_another_formula_is_frozen_not_converted():
    from privlab.llm.adapt import as_torch_rmsnorm

    class GemmaLikeRMSNorm(torch.nn.Module):  # y = (1 + w) * x / rms(x): not torch's formula
        def __init__(self, d):
            super().__init__()
            self.eps = 1e-6
            self.weight = torch.nn.Parameter(torch.randn(d))

        def forward(self, x):
            return (1 + self.weight) * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), GemmaLikeRMSNorm(4))
    assert as_torch_rmsnorm(model[1]) is None
    adapted = prepare_for_dp(model, "ghost")
    assert adapted.converted == [] and adapted.frozen == ["1.weight"] and not model[1].weight.requires_grad


def test_dp_fine_tune_trains_the_converted_rmsnorm_gains():
    lm = _tiny_llama()
    gains = {n: p.detach().clone() for n, p in lm.module.hf.named_parameters() if "norm" in n}
    ids = torch.randint(0, 64, (2000,), generator=torch.Generator().manual_seed(0))
    cfg = FineTuneConfig(steps=3, batch_size=8, seq_len=16, lr=1e-2, dp=DPSpec(target_epsilon=8.0, accountant="rdp"))
    res = fine_tune(lm, ids, cfg)
    assert len(res.converted) == 5 and not res.frozen
    after = dict(lm.module.hf.named_parameters())
    assert all(not torch.equal(after[n], g) for n, g in gains.items())  # private updates reached every gain


@pytest.mark.parametrize("lora", [0, 4])
def test_dp_fine_tune_tiny_llama(lora):
    lm = _tiny_llama()
    ids = torch.randint(0, 64, (2000,), generator=torch.Generator().manual_seed(0))
    cfg = FineTuneConfig(
        steps=3, batch_size=8, seq_len=16, lora_r=lora, dp=DPSpec(target_epsilon=8.0, accountant="rdp")
    )
    res = fine_tune(lm, ids, cfg)
    assert res.epsilon is not None and all(math.isfinite(x) for x in res.losses)
    hf = lm.module.hf if not lora else None
    if hf is not None:
        assert not res.untied and hf.lm_head.weight is hf.model.embed_tokens.weight
    if lora:
        assert not res.untied  # the adapters leave the tied embedding frozen


def test_unsupported_layer_without_adaptation_is_refused():
    from privlab.dp import make_private

    lm = _tiny_llama()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.zeros(8, 4, dtype=torch.long)), batch_size=4
    )
    opt = torch.optim.SGD(lm.module.parameters(), lr=0.1)
    with pytest.raises(UnsupportedModuleError, match="LlamaRMSNorm"):
        make_private(lm.module, opt, loader, noise_multiplier=1.0)
