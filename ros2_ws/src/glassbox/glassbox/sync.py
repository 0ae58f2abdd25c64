"""Stream time: approximate-time pairing of two stamped streams (e.g. RGB and thermal images), and the stamp
guard that rejects stamps going backwards and recognises a restart of a stream's time.

``ApproximateTimeSync`` is what the fusion node and the bag replay use: each stream keeps a queue of at most
``queue_size`` items; when an item arrives, the other queue's item with the nearest stamp is taken as its
partner if the two stamps differ by at most ``slop_s``. A pair is emitted at once (latency is preferred to
waiting for a possibly closer partner), and every queued item at or before the paired ones is then dropped, so
emitted pairs are strictly increasing in time on both streams and no item is used twice. Items that never find
a partner are counted as dropped. ``reset(stream)`` forgets one stream's past (after its time restarted), and
``configure`` changes slop and queue size between two items. Stamps are integer nanoseconds.

``StampGuard`` is what every stage checks header stamps with: a stamp older than its stream's previous one is
rejected (``stamp_backwards``) unless it is older by more than ``jump_threshold_s``, which is a restart of that
stream's time (a bag played in a loop, a simulator reset): the guard accepts it and tells the caller to reset
what it keeps of that stream.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from glassbox.msg.base import ConversionError


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


_NEVER = -(1 << 62)


class ApproximateTimeSync:
    """Two-stream approximate-time synchroniser; ``add(stream, stamp_ns, item) -> Pair | None``."""

    def __init__(self, cfg: SyncConfig = SyncConfig()) -> None:
        self.cfg = cfg
        self.queues: tuple[deque, deque] = (deque(), deque())
        self.last_paired_ns = [_NEVER, _NEVER]
        self.dropped = [0, 0]
        self.pairs = 0

    @property
    def slop_ns(self) -> int:
        return int(round(self.cfg.slop_s * 1e9))

    def configure(self, cfg: SyncConfig) -> None:
        """New settings from the next item on; queued items beyond a smaller queue size are dropped, oldest first."""
        self.cfg = cfg
        for stream, queue in enumerate(self.queues):
            while len(queue) > cfg.queue_size:
                queue.popleft()
                self.dropped[stream] += 1

    def reset(self, stream: int) -> None:
        """Forget what ``stream`` has queued and paired (its time restarted): its next items pair afresh."""
        self.dropped[stream] += len(self.queues[stream])
        self.queues[stream].clear()
        self.last_paired_ns[stream] = _NEVER

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


class StampGuard:
    """Header stamps per stream (see the module docstring): ``check(stream, stamp_ns)`` raises
    ``ConversionError("stamp_backwards")`` for a stamp older than the stream's previous one by at most
    ``jump_threshold_s``, and returns True for one older by more (a time jump: the caller resets that stream's
    state); ``jumps`` counts them and ``last_jump`` is (stream, seconds back) of the latest."""

    def __init__(self, jump_threshold_s: float = 1.0) -> None:
        if not jump_threshold_s >= 0:
            raise SyncError(f"jump_threshold_s must be >= 0, got {jump_threshold_s}")
        self.jump_threshold_s = jump_threshold_s
        self.last_ns: dict[str, int] = {}
        self.jumps = 0
        self.last_jump: tuple[str, float] | None = None

    def check(self, stream: str, stamp_ns: int) -> bool:
        last = self.last_ns.get(stream)
        jumped = False
        if last is not None and stamp_ns < last:
            back_s = (last - stamp_ns) * 1e-9
            if back_s <= self.jump_threshold_s:
                raise ConversionError("stamp_backwards", f"{stream} stamp {stamp_ns} is {back_s:.3f} s older than "
                                      f"the previous one ({last}); a jump of more than {self.jump_threshold_s} s "
                                      "back would restart the stream")
            self.jumps += 1
            self.last_jump = (stream, back_s)
            jumped = True
        self.last_ns[stream] = stamp_ns
        return jumped
