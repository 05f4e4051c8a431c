"""DP fine-tuning of privlab's GPT: ghost clipping on the full model, and LoRA adapters through peft."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from privlab.data import ArrayDataset
from privlab.dp import make_private
from privlab.models import GPT
from privlab.models.gpt import GPTConfig

CFG = GPTConfig(vocab_size=17, block_size=16, n_layer=2, n_head=2, n_embd=16)


def lm_data(n: int = 32) -> ArrayDataset:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, CFG.vocab_size, (n, CFG.block_size + 1), generator=g)
    return ArrayDataset(ids[:, :-1], ids[:, 1:])


def train(model: nn.Module, params, clipping: str = "ghost", epochs: int = 2) -> tuple[float, float]:
    opt = torch.optim.Adam(params, lr=1e-2)
    pt = make_private(model, opt, DataLoader(lm_data(), batch_size=8), noise_multiplier=0.5,
                      clipping=clipping, seed=0)
    losses = []
    for _ in range(epochs):
        for x, y in pt.data_loader:
            pt.optimizer.zero_grad()
            loss = nn.functional.cross_entropy(pt.model(x).transpose(1, 2), y)
            loss.backward()
            pt.optimizer.step()
            losses.append(loss.item())
    return losses[0], pt.epsilon()


def test_ghost_clipping_trains_gpt() -> None:
    torch.manual_seed(0)
    model = GPT(CFG)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _, eps = train(model, model.parameters())
    assert 0 < eps < float("inf")
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert "pos_emb.weight" in changed and "tok_emb.weight" in changed and "blocks.0.ln1.weight" in changed


def test_lora_changes_only_adapter_parameters() -> None:
    pytest.importorskip("peft")
    from privlab.dp.lora import add_lora

    torch.manual_seed(0)
    model = add_lora(GPT(CFG), target_modules=["qkv", "proj"], r=4)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train(model, [p for p in model.parameters() if p.requires_grad])
    for n, p in model.named_parameters():
        if n in trainable and "lora_B" in n:
            assert not torch.equal(p, before[n]), n  # adapters moved
        elif n not in trainable:
            assert torch.equal(p, before[n]), n  # the frozen base did not
