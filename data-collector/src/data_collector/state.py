"""What a running job carries between chunks, shared by the backfill and stream runners."""

from __future__ import annotations

from dataclasses import dataclass


class JobCancelled(Exception):
    """Raised at a chunk boundary when the job was asked to stop."""


@dataclass
class RunState:
    """Counters of a running job, written back with each checkpoint.

    ``checkpoint`` maps symbol → timeframe → the last KST day whose chunk the bus confirmed.
    """

    checkpoint: dict[str, dict[str, str]]
    chunks_done: int
    bars_published: int
    ticks_published: int
    symbols_done: int
