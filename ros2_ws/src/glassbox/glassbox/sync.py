"""Approximate-time pairing of two stamped streams (e.g. RGB and thermal images).

``ApproximateTimeSync`` is what the fusion node and the bag replay use: each stream keeps a queue of at most
``queue_size`` items; when an item arrives, the other queue's item with the nearest stamp is taken as its
partner if the two stamps differ by at most ``slop_s``. A pair is emitted at once (latency is preferred to
waiting for a possibly closer partner), and every queued item at or before the paired ones is then dropped, so
emitted pairs are strictly increasing in time on both streams and no item is used twice. Items that never find
a partner are counted as dropped. Stamps are integer nanoseconds.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any


class SyncError(ValueError):
    """Invalid synchroniser settings or input."""


@dataclass(frozen=True)
class SyncConfig:
    slop_s: float = 0.05
    queue_size: int = 10

    def __post_init__(self) -> None:
        if not self.slop_s >= 0:
            raise SyncError(f"slop_s must be >= 0, got {self.slop_s}")
        if self.queue_size < 1:
            raise SyncError(f"queue_size must be >= 1, got {self.queue_size}")


@dataclass(frozen=True)
class Pair:
    first: Any
    second: Any
    stamp_first_ns: int
    stamp_second_ns: int

    @property
    def skew_ns(self) -> int:
        return self.stamp_second_ns - self.stamp_first_ns


class ApproximateTimeSync:
    """Two-stream approximate-time synchroniser; ``add(stream, stamp_ns, item) -> Pair | None``."""

    def __init__(self, cfg: SyncConfig = SyncConfig()) -> None:
        self.cfg = cfg
        self.slop_ns = int(round(cfg.slop_s * 1e9))
        self.queues: tuple[deque, deque] = (deque(), deque())
        self.last_paired_ns = [-(1 << 62), -(1 << 62)]
        self.dropped = [0, 0]
        self.pairs = 0

    def add(self, stream: int, stamp_ns: int, item: Any) -> Pair | None:
        if stream not in (0, 1):
            raise SyncError(f"stream must be 0 or 1, got {stream}")
        stamp_ns = int(stamp_ns)
        if stamp_ns <= self.last_paired_ns[stream]:
            self.dropped[stream] += 1          # older than what was already paired: can never be used
            return None
        other = self.queues[1 - stream]
        best, best_gap = -1, None
        for i, (s, _) in enumerate(other):
            gap = abs(s - stamp_ns)
            if gap <= self.slop_ns and (best_gap is None or gap < best_gap):
                best, best_gap = i, gap
        if best < 0:
            queue = self.queues[stream]
            queue.append((stamp_ns, item))
            if len(queue) > self.cfg.queue_size:
                queue.popleft()
                self.dropped[stream] += 1
            return None
        partner_ns, partner = other[best]
        for _ in range(best + 1):              # the partner and everything older in the other queue
            other.popleft()
        self.dropped[1 - stream] += best
        own = self.queues[stream]
        while own and own[0][0] <= stamp_ns:   # older items of this stream lose their chance
            own.popleft()
            self.dropped[stream] += 1
        self.last_paired_ns[stream], self.last_paired_ns[1 - stream] = stamp_ns, partner_ns
        self.pairs += 1
        if stream == 0:
            return Pair(item, partner, stamp_ns, partner_ns)
        return Pair(partner, item, partner_ns, stamp_ns)
