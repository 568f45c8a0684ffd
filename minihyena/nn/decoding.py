"""Decoding caches: what a layer keeps between tokens so that each new token costs one position.

A state is made by a layer's ``init_state(batch)``, filled once by ``forward(x, state=state)``
(the prefill: the whole prompt in one pass) and advanced by ``step(x_t, state)``, one position at
a time, up to the layer's ``l_max`` positions.
"""
from __future__ import annotations


class DecodeState:
    """Bookkeeping shared by every cache: ``t`` positions filled, at most ``capacity`` (= l_max)."""

    def __init__(self, owner: str, batch: int, capacity: int):
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"{owner}: the decoding batch size must be a positive integer, got {batch!r}")
        self.owner, self.batch, self.capacity, self.t = owner, batch, capacity, 0

    def _check_batch(self, B: int) -> None:
        if B != self.batch:
            raise ValueError(f"{self.owner}: the decoding state holds batch {self.batch}, the input has batch {B}")

    def begin_prefill(self, B: int, L: int) -> None:
        """Check a prefill of L positions: the state must be fresh and of the same batch."""
        self._check_batch(B)
        if self.t:
            raise ValueError(f"{self.owner}: prefill needs a fresh decoding state (this one holds {self.t} positions)")
        self.t = L

    def begin_step(self, B: int) -> int:
        """Check one more position fits; return its index t (the caller advances ``t`` when done)."""
        self._check_batch(B)
        if self.t >= self.capacity:
            raise ValueError(
                f"{self.owner}: the decoding state is full ({self.capacity} positions = l_max); "
                "start a new state and prefill it with the most recent tokens"
            )
        return self.t
