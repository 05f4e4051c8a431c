"""Transports move bytes between the two parties (and from the dealer) and count them."""

from privlab.mpc.transport.base import Transport, pack, unpack
from privlab.mpc.transport.local import LocalTransport, local_pair

__all__ = ["LocalTransport", "Transport", "local_pair", "pack", "unpack"]
