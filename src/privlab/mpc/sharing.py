"""Creating and revealing shares.

A party's arithmetic share is an int64 tensor; the secret is the sum of the two parties' shares
modulo 2^64 (int64 wrap-around). A binary share is a uint8 tensor of bits; the secret is the XOR.
Real values are fixed point (``encoding``).
"""

from __future__ import annotations

import torch

from privlab._validation import check_int
from privlab.errors import InvalidParameterError
from privlab.mpc.encoding import decode, encode
from privlab.mpc.party import Party
from privlab.mpc.protocols.verify import verify
from privlab.mpc.transport.base import unpack


def share(
    party: Party, src: int, x: torch.Tensor | None, shape: tuple[int, ...] | torch.Size, *, encoded: bool = False
) -> torch.Tensor:
    """Share ``x`` (held by party ``src``) with no communication.

    Both parties draw ``z`` from the seed they share; the non-source party's share is ``z``, the
    source's is ``encode(x) - z``. Rounds 0, bytes 0. ``shape`` must be known to both parties.
    """
    check_int(src, "src", "share", low=0, high=1)
    z = party.pair_prg.ring(tuple(shape))
    if party.rank != src:
        return z
    if not isinstance(x, torch.Tensor):
        raise InvalidParameterError(
            f"The 'x' parameter of share must be a tensor on the source party. Got {type(x).__name__} instead."
        )
    if x.is_complex() or (encoded and x.is_floating_point()):
        what = "an integer tensor of ring elements (encoded=True)" if encoded else "a real tensor"
        raise InvalidParameterError(f"The 'x' parameter of share must be {what}. Got dtype {x.dtype} instead.")
    if tuple(x.shape) != tuple(shape):
        raise InvalidParameterError(
            f"The 'x' parameter of share must have shape {tuple(shape)}. Got shape {tuple(x.shape)} instead."
        )
    if not encoded and x.numel():
        big = float(x.detach().double().abs().max())
        if not big < 2.0 ** (62 - party.f):  # also NaN and inf
            raise InvalidParameterError(
                f"The 'x' parameter of share must be finite with |x| < 2^(62 - frac_bits) = "
                f"{2.0 ** (62 - party.f):.3g}, the fixed-point range. Got a value of magnitude {big:.3g} instead."
            )
    v = x.to(torch.int64) if encoded else encode(x, party.f)
    return v - z


def zero_share(party: Party, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """Pseudo-random shares of zero (party 0: ``z``, party 1: ``-z``); no communication."""
    z = party.pair_prg.ring(tuple(shape))
    return z if party.rank == 0 else -z


def reveal(party: Party, x: torch.Tensor, to: int | None = None, *, decoded: bool = True) -> torch.Tensor | None:
    """Reveal an arithmetic share to both parties (``to=None``) or only to party ``to``.

    One round; 8 bytes per element from each sender. Returns the decoded real tensor (or the raw
    ring value with ``decoded=False``); the party that learns nothing gets ``None``. Pending range
    checks (``privlab.mpc.checks``) run first and raise ``MPCRangeError`` instead of revealing.
    """
    verify(party)
    if to is None:
        (v,) = party.open([x])
    else:
        check_int(to, "to", "reveal", low=0, high=1)
        if party.rank == to:
            got = party.transport.recv(party.peer, x.numel() * 8)
            party.counter.add_round(0)
            v = x + unpack(got, [x])[0]
        else:
            buf = x.contiguous().reshape(-1).view(torch.uint8)
            party.transport.send(party.peer, buf)
            party.counter.add_round(buf.numel())
            return None
    return decode(v, party.f) if decoded else v
