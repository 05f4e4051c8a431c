"""The two time limits of a run and the errors that say which one fired.

``timeout`` bounds each wait for one message (a dead or silent peer); ``deadline`` (absolute,
``time.monotonic()``) bounds the whole run. A wait lasts ``min(timeout, time left)``; when it
fails, the error names the limit that was binding, so a run stopped by its deadline does not
read as a dead party.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from privlab.errors import MPCError


@dataclass(frozen=True)
class Limits:
    """Per-message ``timeout`` (s), and the run's ``deadline_at`` (monotonic s) with its length."""

    timeout: float
    deadline_at: float | None = None
    deadline: float | None = None

    @staticmethod
    def start(timeout: float, deadline: float | None) -> Limits:
        """Limits of a run that starts now."""
        return Limits(timeout, None if deadline is None else time.monotonic() + deadline, deadline)

    def wait(self, who: str) -> tuple[float, bool]:
        """Seconds the next wait may last, and whether the deadline (not the timeout) binds it.
        Raises the deadline error if the deadline has already passed."""
        if self.deadline_at is None:
            return self.timeout, False
        left = self.deadline_at - time.monotonic()
        if left <= 0:
            raise self.deadline_error(who)
        return (left, True) if left < self.timeout else (self.timeout, False)

    def deadline_error(self, who: str) -> MPCError:
        return MPCError(
            f"{who}: the run passed its deadline of {self.deadline} s (MPCConfig.deadline, the "
            "whole-run limit) and was stopped; no party is known to have failed. Raise "
            "MPCConfig.deadline, or set it to None for no limit."
        )

    def timeout_error(self, who: str, src: int, detail: str = "", waited: float | None = None) -> MPCError:
        """The error of a wait for ``src`` that failed after ``waited`` seconds (default: the full
        timeout); a connection that broke early reports the shorter wait, not the timeout."""
        extra = f" ({detail})" if detail else ""
        if waited is not None and waited < self.timeout - 0.05:
            return MPCError(
                f"{who} gave up after {waited:.1f} s waiting for a message from rank {src}, before "
                f"MPCConfig.timeout ({self.timeout} s, the per-message limit): the peer died or closed "
                f"the connection{extra}"
            )
        return MPCError(
            f"{who} waited {self.timeout} s for a message from rank {src} (MPCConfig.timeout, the "
            f"per-message limit): the peer died or stopped answering{extra}"
        )
