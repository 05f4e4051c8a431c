"""Tokenisers behind one small interface: ``encode(text) -> list[int]``, ``decode(ids) -> str``.

* :class:`CharTokenizer`: one token per character over a fixed vocabulary (privlab's small GPT on
  Shakespeare); built from the texts it must cover, so canaries and PII characters are included.
* :class:`HFTokenizer`: a Hugging Face tokeniser (e.g. SmolLM2's BPE), without special tokens.

A filled sentence ``prefix + value + suffix`` is scored as it is trained: encoded as one string, then
split at the prefix's last complete token (:func:`split_filled`). Encoding the pieces separately would
give a different id sequence on BPE tokenisers that merge a space into the next token (SmolLM2:
``"is "`` + ``"john"`` -> ``[" is", " ", "john"]``, trained as ``[" is", " john"]``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

import torch

from privlab.errors import InvalidParameterError


@runtime_checkable
class Tokenizer(Protocol):
    """What privlab.llm needs from a tokeniser."""

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


class CharTokenizer:
    """Character-level tokeniser over ``vocab`` (a sequence of distinct one-character strings)."""

    def __init__(self, vocab: Sequence[str]) -> None:
        chars = tuple(vocab)
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars) or not chars:
            raise InvalidParameterError(
                "The 'vocab' parameter of CharTokenizer must be distinct single characters. "
                f"Got {len(chars)} entries ({len(set(chars))} distinct) instead."
            )
        self.vocab = chars
        self._pos = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> CharTokenizer:
        """The sorted set of characters of ``texts``."""
        chars: set[str] = set()
        for t in texts:
            chars.update(t)
        return cls(sorted(chars))

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        missing = sorted({c for c in text if c not in self._pos})
        if missing:
            raise InvalidParameterError(
                f"The 'text' parameter of CharTokenizer.encode must use the tokenizer's vocabulary. "
                f"Got characters {missing!r} instead."
            )
        return [self._pos[c] for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.vocab[int(i)] for i in ids)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "char", "vocab": "".join(self.vocab)}


class HFTokenizer:
    """A Hugging Face tokeniser used without special tokens (``add_special_tokens=False``)."""

    def __init__(self, tokenizer: Any) -> None:
        self.inner = tokenizer

    @property
    def vocab_size(self) -> int:
        return len(self.inner)

    def encode(self, text: str) -> list[int]:
        return list(self.inner.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.inner.decode([int(i) for i in ids]))


def encode_pieces(tokenizer: Tokenizer, pieces: Sequence[str]) -> list[int]:
    """Ids of ``pieces`` encoded one by one and concatenated (a stable split at piece boundaries)."""
    out: list[int] = []
    for p in pieces:
        out.extend(tokenizer.encode(p))
    return out


def prefix_boundary(tokenizer: Tokenizer, prefix: str, ids: Sequence[int]) -> int:
    """Number of leading tokens of ``ids`` that lie entirely inside ``prefix`` (decode to a prefix of it)."""
    k = 0
    while k < len(ids) and prefix.startswith(tokenizer.decode(list(ids[: k + 1]))):
        k += 1
    return k


def split_filled(
    tokenizer: Tokenizer, prefix: str, fillings: Sequence[str]
) -> tuple[list[int], list[list[int]]]:
    """Shared context ids and per-filling continuation ids of the sentences ``prefix + filling``.

    Each sentence is encoded whole (as in training); the context is the longest run of leading tokens
    that every sentence shares and that lies inside ``prefix``; the continuation is the rest of that
    sentence's ids, which covers the prefix's leftover characters (e.g. a trailing space merged into
    the value's first token), the filling, and anything after it. ``log p(continuation | context)``
    then ranks fillings as the whole sentences' likelihoods do.
    """
    if not fillings:
        raise InvalidParameterError("The 'fillings' parameter of split_filled must be non-empty. Got [] instead.")
    wholes = [tokenizer.encode(prefix + f) for f in fillings]
    k = min(prefix_boundary(tokenizer, prefix, w) for w in wholes)
    while k > 0 and any(w[:k] != wholes[0][:k] for w in wholes):
        k -= 1
    if k == 0 or any(len(w) == k for w in wholes):
        raise InvalidParameterError(
            f"The 'prefix' parameter of split_filled must end on a token boundary before each filling and "
            f"keep at least one whole token. Got {prefix!r}, which the tokeniser merges into the filling."
        )
    return list(wholes[0][:k]), [list(w[k:]) for w in wholes]


def format_probe(value: str) -> str:
    """``value`` with its content replaced, its form kept (digits -> 0, letters -> x / X): a filling that
    tokenises at the same boundaries without being the secret."""
    return "".join("0" if ch.isdigit() else ("X" if ch.isupper() else "x") if ch.isalpha() else ch for ch in value)


def prefix_context(tokenizer: Tokenizer, prefix: str, probe: str) -> tuple[list[int], str]:
    """Ids to condition generation on, and the prefix characters the model must still produce.

    ``probe`` is any filling of the right form (it only decides where the tokeniser splits): the
    context is :func:`split_filled`'s, so generation starts from token ids seen in training.
    """
    ctx, _ = split_filled(tokenizer, prefix, [probe])
    return ctx, prefix[len(tokenizer.decode(ctx)) :]


def token_windows(ids: torch.Tensor, length: int, stride: int | None = None) -> torch.Tensor:
    """Windows (N, length + 1) of a 1-D id tensor: inputs are ``w[:, :-1]``, next-token targets ``w[:, 1:]``."""
    if ids.dim() != 1 or ids.numel() < length + 1:
        raise InvalidParameterError(
            f"The 'ids' parameter of token_windows must be 1-D with at least length+1={length + 1} tokens. "
            f"Got shape {tuple(ids.shape)} instead."
        )
    step = stride or length
    return ids.unfold(0, length + 1, step).contiguous()


PAD = -1  # padding id of unit windows: never an input the model sees (clamped) nor a target (ignored)
NO_UNIT = -1  # token label of text that belongs to no named unit (each of its windows is its own unit)


def unit_windows(ids: torch.Tensor, units: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows (N, length + 1) that never hold tokens of two named units, and the unit of each window.

    ``units[t]`` labels token t: a unit id >= 0 (a secret, a document) or ``NO_UNIT``. Windows are
    consecutive and non-overlapping; one is closed early, and padded with ``PAD`` to ``length + 1``,
    before a token of a named unit other than the one it already holds. A window's unit is its named
    unit, or, if it has none, a fresh id (``max(units) + 1``, ``+ 2`` ...): it is a unit of its own. So
    every token of unit u is in a window of unit u, and sampling one window per unit bounds what
    unit u adds to a step. Windows with fewer than 2 real tokens (no next-token target) are dropped.
    """
    if ids.dim() != 1 or units.shape != ids.shape:
        raise InvalidParameterError(
            "The 'units' parameter of unit_windows must label every token of the 1-D 'ids' "
            f"({tuple(ids.shape)}). Got shape {tuple(units.shape)} instead."
        )
    if units.numel() and int(units.min()) < NO_UNIT:
        raise InvalidParameterError(
            f"The 'units' parameter of unit_windows must be unit ids >= 0 or NO_UNIT ({NO_UNIT}). "
            f"Got {int(units.min())} instead."
        )
    size = length + 1
    fresh = int(units.max()) + 1 if units.numel() else 0
    rows: list[list[int]] = []
    owners: list[int] = []
    cur: list[int] = []
    owner = NO_UNIT

    def close() -> None:
        nonlocal cur, owner, fresh
        if len(cur) >= 2:
            rows.append(cur + [PAD] * (size - len(cur)))
            if owner == NO_UNIT:
                owner, fresh = fresh, fresh + 1
            owners.append(owner)
        cur, owner = [], NO_UNIT

    for tok, lab in zip(ids.tolist(), units.tolist(), strict=True):
        if lab != NO_UNIT and owner not in (NO_UNIT, lab):
            close()
        cur.append(tok)
        if lab != NO_UNIT:
            owner = lab
        if len(cur) == size:
            close()
    close()
    if not rows:
        raise InvalidParameterError(
            f"The 'ids' parameter of unit_windows must hold at least one window of 2 tokens. Got {ids.numel()} tokens."
        )
    return torch.tensor(rows, dtype=torch.long), torch.tensor(owners, dtype=torch.long)
