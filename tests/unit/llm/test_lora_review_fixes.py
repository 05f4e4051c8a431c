"""LoRA review fixes: ``fine_tune`` works on a copy of the caller's model; LoRA targets are validated."""

from __future__ import annotations

import copy

import pytest
import torch

from privlab.dp.lora import add_lora
from privlab.errors import InvalidParameterError
from privlab.llm.config import DPSpec, FineTuneConfig
from privlab.llm.finetune import fine_tune
from privlab.llm.models import LanguageModel, small_gpt
from privlab.llm.tokenization import CharTokenizer
from privlab.models import GPT, GPTConfig

pytest.importorskip("peft")


def _lm() -> tuple[LanguageModel, torch.Tensor]:
    tok = CharTokenizer("abcdefghijklmnopqrstuvwxyz ")
    ids = torch.randint(0, tok.vocab_size, (2000,), generator=torch.Generator().manual_seed(0))
    return small_gpt(tok, block_size=32, n_layer=1, n_embd=16, n_head=2), ids


@pytest.mark.parametrize("dp", [None, DPSpec(target_epsilon=8.0, clipping="ghost")], ids=["non-private", "dp"])
def test_lora_fine_tune_leaves_the_callers_model_unchanged(dp: DPSpec | None) -> None:
    lm, ids = _lm()
    before = {n: (p.detach().clone(), p.requires_grad) for n, p in lm.module.named_parameters()}
    modules = [type(m) for m in lm.module.modules()]
    res = fine_tune(lm, ids, FineTuneConfig(steps=3, batch_size=8, seq_len=16, lr=1e-2, lora_r=2, dp=dp))
    after = dict(lm.module.named_parameters())
    assert after.keys() == before.keys()
    for n, (value, grad) in before.items():
        assert torch.equal(after[n], value) and after[n].requires_grad == grad, n
    assert [type(m) for m in lm.module.modules()] == modules  # no adapters injected
    # control: the trained copy has the adapters, and only they train
    trained = [n for n, p in res.lm.module.named_parameters() if p.requires_grad]
    assert trained and all("lora_" in n for n in trained)
    assert res.lm.module is not lm.module


def test_add_lora_refuses_targets_that_are_a_string_empty_or_match_no_module() -> None:
    base = GPT(GPTConfig(vocab_size=20, block_size=16, n_layer=1, n_head=2, n_embd=16))
    for bad, match in (("qkv", "a string would be read as its characters"), ([], r"Got \[\] instead"),
                       (["qkv", ""], "must be a list or tuple"), (["nope"], r"\['nope'\] match no module")):
        with pytest.raises(InvalidParameterError, match=rf"'target_modules' parameter of add_lora.*{match}"):
            add_lora(copy.deepcopy(base), bad)  # type: ignore[arg-type]
    # control: a name and a dotted suffix both match, as in peft
    m = add_lora(copy.deepcopy(base), ["qkv", "attn.proj"], r=2)
    assert {n.split(".lora_")[0] for n, p in m.named_parameters() if p.requires_grad} == {
        "base_model.model.blocks.0.attn.qkv", "base_model.model.blocks.0.attn.proj"}


def test_fine_tune_config_refuses_string_targets_and_targets_without_lora_r() -> None:
    with pytest.raises(InvalidParameterError, match="'lora_targets' parameter of FineTuneConfig must be a list"):
        FineTuneConfig(lora_r=2, lora_targets="qkv")  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="can be given only with lora_r > 0"):
        FineTuneConfig(lora_targets=("qkv",))
    assert FineTuneConfig(lora_r=2, lora_targets=("qkv",)).lora_targets == ("qkv",)  # control
    assert FineTuneConfig(lora_r=2, lora_targets=["qkv"]).lora_targets == ["qkv"]  # type: ignore[arg-type]
    assert FineTuneConfig().lora_targets == ()


def test_fine_tune_names_unknown_targets_and_refuses_dp_adapters_it_would_freeze() -> None:
    lm, ids = _lm()
    with pytest.raises(InvalidParameterError, match=r"FineTuneConfig\.lora_targets=\('nope',\).*match no module"):
        fine_tune(lm, ids, FineTuneConfig(steps=1, batch_size=8, seq_len=16, lora_r=2, lora_targets=("nope",)))
    dp = DPSpec(target_epsilon=8.0, clipping="ghost")
    cfg = FineTuneConfig(steps=1, batch_size=8, seq_len=16, lora_r=2, lora_targets=("tok_emb", "qkv"), dp=dp)
    with pytest.raises(InvalidParameterError, match=r"'lora_targets' .*tok_emb\.lora_embedding_A"):
        fine_tune(lm, ids, cfg)
    # control: the same targets without DP train (nothing is frozen)
    res = fine_tune(lm, ids, FineTuneConfig(steps=1, batch_size=8, seq_len=16, lora_r=2, lora_targets=("tok_emb",)))
    assert res.frozen == () and res.trainable_parameters > 0
