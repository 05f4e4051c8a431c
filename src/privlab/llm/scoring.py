"""Per-token log-probabilities of a causal LM, the quantities every attack in privlab.llm starts from.

For ids ``x_1..x_T`` the model gives ``log p(x_t | x_<t)`` for t = 2..T (the first token has no
context here). :func:`token_stats` also returns, per position, the mean and standard deviation of
``log p(z | x_<t)`` over the vocabulary under the model's own next-token distribution (the
normalisers of Min-K%++, Zhang et al. 2024)::

    mu_t = sum_z p(z | x_<t) log p(z | x_<t)
    sigma_t^2 = sum_z p(z | x_<t) (log p(z | x_<t))^2 - mu_t^2

:func:`continuation_logprob` scores candidate continuations of one prefix (canary secrets, PII
candidates); :func:`digit_tree_logprob` is its fast path for all ``10**n`` digit strings at once
(one forward pass per tree level instead of one per candidate), tested against the slow path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from privlab._validation import check_int
from privlab.errors import InvalidParameterError
from privlab.llm.models import LanguageModel


@dataclass(frozen=True)
class TokenStats:
    """(N, T-1) tensors: ``logp[i, t-1] = log p(x_t | x_<t)``, ``mu``, ``sigma`` (Min-K%++), and ``mask``."""

    logp: torch.Tensor
    mu: torch.Tensor
    sigma: torch.Tensor
    mask: torch.Tensor


def _pad(seqs: Sequence[Sequence[int]], pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad, dtype=torch.long)
    mask = torch.zeros(len(seqs), T, dtype=torch.bool)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
        mask[i, : len(s)] = True
    return ids, mask


@torch.no_grad()
def token_stats(lm: LanguageModel, seqs: Sequence[Sequence[int]] | torch.Tensor, batch_size: int = 64) -> TokenStats:
    """Per-token log-probs and their vocabulary mean/std for each sequence (right-padded; see ``mask``)."""
    check_int(batch_size, "batch_size", "token_stats", low=1)
    if isinstance(seqs, torch.Tensor):
        ids, mask = seqs.long(), torch.ones_like(seqs, dtype=torch.bool)
    else:
        if not seqs or min(len(s) for s in seqs) < 2:
            raise InvalidParameterError(
                "The 'seqs' parameter of token_stats must hold sequences of at least 2 tokens. "
                f"Got {len(seqs)} sequences instead."
            )
        ids, mask = _pad(seqs)
    if ids.shape[1] > lm.block_size + 1:  # the model reads ids[:, :-1]
        raise InvalidParameterError(
            f"The 'seqs' parameter of token_stats must have at most block_size+1={lm.block_size + 1} tokens. "
            f"Got {ids.shape[1]} instead."
        )
    was_training = lm.module.training
    lm.module.eval()
    lps, mus, sds = [], [], []
    for s in range(0, len(ids), batch_size):
        x = ids[s : s + batch_size]
        logits = lm.logits(x[:, :-1]).float()  # (b, T-1, V)
        logq = F.log_softmax(logits, -1)
        q = logq.exp()
        lp = logq.gather(-1, x[:, 1:].unsqueeze(-1)).squeeze(-1)  # (b, T-1)
        mu = (q * logq).sum(-1)
        var = (q * logq.square()).sum(-1) - mu.square()
        lps.append(lp)
        mus.append(mu)
        sds.append(var.clamp_min(0).sqrt())
    lm.module.train(was_training)
    return TokenStats(torch.cat(lps), torch.cat(mus), torch.cat(sds), mask[:, 1:])


def continuation_logprob(
    lm: LanguageModel, prefix: Sequence[int], continuations: Sequence[Sequence[int]], batch_size: int = 256
) -> torch.Tensor:
    """(N,) ``log p(c | prefix)`` in nats for each candidate continuation ``c`` (ids).

    The prefix is cut from the left so that prefix + longest continuation fits the context.
    """
    if not continuations or min(len(c) for c in continuations) < 1:
        raise InvalidParameterError(
            "The 'continuations' parameter of continuation_logprob must hold non-empty id sequences. "
            f"Got {len(continuations)} sequences instead."
        )
    longest = max(len(c) for c in continuations)
    keep = max(1, min(len(prefix), lm.block_size + 1 - longest))
    if not prefix:
        raise InvalidParameterError("The 'prefix' parameter of continuation_logprob must be non-empty. Got [] instead.")
    pre = list(prefix)[-keep:]
    seqs = [pre + list(c) for c in continuations]
    st = token_stats(lm, seqs, batch_size)
    P = len(pre)
    pos = torch.arange(st.logp.shape[1]).unsqueeze(0)  # position t-1 scores token t
    lens = torch.tensor([len(c) for c in continuations]).unsqueeze(1)
    in_cont = (pos >= P - 1) & (pos < P - 1 + lens)
    return (st.logp * in_cont).sum(1)


@torch.no_grad()
def digit_tree_logprob(
    lm: LanguageModel, prefix: Sequence[int], digit_ids: Sequence[int], n_digits: int, batch_size: int = 1024
) -> torch.Tensor:
    """(10**n,) ``log p(d_1..d_n | prefix)`` of every digit string, index = the string's integer value.

    Level k feeds the 10**k strings of length k once and reads the next-digit distribution at the
    last position: ``sum_k 10**k`` (about 1.1 * 10**(n-1)) short forward passes. Needs each digit
    to be one token (``digit_ids[d]`` is the id of digit d).
    """
    check_int(n_digits, "n_digits", "digit_tree_logprob", low=1, high=8)
    if len(digit_ids) != 10:
        raise InvalidParameterError(
            f"The 'digit_ids' parameter of digit_tree_logprob must hold 10 ids. Got {len(digit_ids)} instead."
        )
    keep = max(1, min(len(prefix), lm.block_size - n_digits + 1))
    pre = torch.as_tensor(list(prefix)[-keep:], dtype=torch.long)
    digits = torch.as_tensor(list(digit_ids), dtype=torch.long)
    was_training = lm.module.training
    lm.module.eval()
    ctx = pre.unsqueeze(0)  # (1, P): the strings of the current level, as ids
    total = torch.zeros(1)
    for k in range(n_digits):
        lp = []
        for s in range(0, len(ctx), batch_size):
            logits = lm.logits(ctx[s : s + batch_size])[:, -1, :].float()  # (b, V)
            lp.append(F.log_softmax(logits, -1)[:, digits])  # (b, 10)
        step = torch.cat(lp)  # (10**k, 10)
        total = (total.unsqueeze(1) + step).reshape(-1)  # (10**(k+1),) in lexicographic = numeric order
        if k < n_digits - 1:
            ctx = torch.cat([ctx.repeat_interleave(10, 0), digits.repeat(len(ctx)).unsqueeze(1)], 1)
    lm.module.train(was_training)
    return total
