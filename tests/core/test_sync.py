"""Approximate-time pairing: slop, queue limits, monotonic pairs, no reuse, offline mutual-nearest matching,
settings changed between items, a stream's time restarting; the stamp guard (reorderings rejected, jumps back
restart the stream); and the fusion stage's pairing, sensor-timeout fallback on the caller's clock and a looped
sequence of stamps."""
import numpy as np
import pytest

from glassbox.msg import ConversionError
from glassbox.sync import ApproximateTimeSync, StampGuard, SyncConfig, SyncError

MS = 1_000_000


def test_pairs_within_slop_only():
    sync = ApproximateTimeSync(SyncConfig(slop_s=0.010, queue_size=5))
    assert sync.add(0, 100 * MS, "a0") is None
    assert sync.add(1, 125 * MS, "b0") is None            # 25 ms away: too far
    pair = sync.add(1, 108 * MS, "b1")
    assert pair is not None and (pair.first, pair.second) == ("a0", "b1") and pair.skew_ns == 8 * MS
    # b0 (125 ms) is newer than the pair and still waits; a 130 ms RGB frame pairs with it.
    pair = sync.add(0, 130 * MS, "a1")
    assert (pair.first, pair.second, pair.stamp_second_ns) == ("a1", "b0", 125 * MS)


def test_nearest_partner_wins_and_older_items_are_dropped():
    sync = ApproximateTimeSync(SyncConfig(slop_s=0.02, queue_size=10))
    for t in (0, 10, 20):
        sync.add(1, t * MS, f"b{t}")
    pair = sync.add(0, 12 * MS, "a")
    assert pair.second == "b10"
    assert sync.dropped[1] == 1 and [s for s, _ in sync.queues[1]] == [20 * MS]
    assert sync.add(1, 5 * MS, "late") is None and sync.dropped[1] == 2   # older than the last pair


def test_queue_size_bounds_memory():
    sync = ApproximateTimeSync(SyncConfig(slop_s=0.001, queue_size=3))
    for i in range(10):
        sync.add(0, i * 100 * MS, i)
    assert len(sync.queues[0]) == 3 and sync.dropped[0] == 7
    assert sync.add(1, 900 * MS, "b").first == 9


def test_stream_of_jittered_pairs_all_match_in_order():
    rng = np.random.default_rng(0)
    sync = ApproximateTimeSync(SyncConfig(slop_s=0.01, queue_size=4))
    stamps = np.arange(50) * 100 * MS
    jitter = rng.integers(-4 * MS, 4 * MS, size=50)
    events = [(s, 0, i) for i, s in enumerate(stamps)] + [(s + j, 1, i) for i, (s, j) in enumerate(zip(stamps, jitter))]
    events.sort()
    pairs = [p for p in (sync.add(st, t, i) for t, st, i in events) if p is not None]
    assert [(p.first, p.second) for p in pairs] == [(i, i) for i in range(50)]
    assert sync.dropped == [0, 0]


def test_config_is_validated():
    with pytest.raises(SyncError):
        SyncConfig(slop_s=-1.0)


def test_configure_changes_slop_and_queue_between_items():
    sync = ApproximateTimeSync(SyncConfig(slop_s=0.010, queue_size=5))
    for i in range(4):
        sync.add(0, i * 100 * MS, i)
    sync.configure(SyncConfig(slop_s=0.030, queue_size=2))
    assert [s for s, _ in sync.queues[0]] == [200 * MS, 300 * MS] and sync.dropped[0] == 2   # oldest dropped
    assert sync.add(1, 325 * MS, "b").first == 3                  # 25 ms: paired under the new slop only


def test_reset_lets_a_restarted_stream_pair_again():
    def play(sync, reset):
        pairs = []
        for loop in range(2):
            for i in range(5):
                for stream in (0, 1):
                    if loop and i == 0 and reset:
                        sync.reset(stream)                        # what a stage does on a stamp jump
                    p = sync.add(stream, (i * 100 + stream * 5) * MS, (loop, i))
                    if p is not None:
                        pairs.append(p.first)
        return pairs
    cfg = SyncConfig(slop_s=0.01, queue_size=4)
    assert play(ApproximateTimeSync(cfg), reset=True) == [(loop, i) for loop in range(2) for i in range(5)]
    assert play(ApproximateTimeSync(cfg), reset=False) == [(0, i) for i in range(5)]   # the loop never pairs


def test_stamp_guard_rejects_reorderings_and_restarts_on_a_jump_back():
    guard = StampGuard(jump_threshold_s=1.0)
    assert guard.check("lidar", 10_000 * MS) is False
    for back_ms in (1, 1000):                                       # up to the threshold: a reordering
        with pytest.raises(ConversionError) as exc:
            guard.check("lidar", (10_000 - back_ms) * MS)
        assert exc.value.reason == "stamp_backwards"
    assert guard.check("lidar", 10_000 * MS) is False               # equal stamps are not backwards
    assert guard.check("lidar", 8_999 * MS) is True                 # 1.001 s back: the stream restarted
    assert guard.jumps == 1 and guard.last_jump == ("lidar", pytest.approx(1.001))
    assert guard.check("lidar", 9_000 * MS) is False                # and goes on from there
    assert guard.check("rgb", 0) is False                           # streams are separate
    with pytest.raises(SyncError):
        StampGuard(jump_threshold_s=-1.0)


# ------------------------------------------------------------------------- the fusion stage's pairing and fallback
class _FakeFusion:
    """Stands in for the GEM pipeline: records its inputs, returns one fixed box."""

    def __init__(self):
        self.calls = []

    def __call__(self, rgb, thermal):
        from glassbox.pipelines import FusionResult
        self.calls.append((rgb, thermal))
        share = 0.5 if thermal is not None else 1.0
        return FusionResult(boxes=np.array([[1.0, 2.0, 5.0, 6.0]]), scores=np.array([0.9]), classes=np.array([0]),
                            uncertainty=np.array([0.1]), w_rgb=share, w_thermal=1.0 - share, rgb_share=share,
                            entropy=None, timings_ms={}, class_names=("car",))


def test_fusion_stage_pairs_then_falls_back_on_the_callers_clock():
    from glassbox import msg as gm
    from glassbox.bag.typestore import make_typestore
    from glassbox.stages import FusionStage

    f = gm.RosbagsFactory(make_typestore())
    rgb = np.full((4, 6, 3), 200, np.uint8)
    th = np.full((4, 6), 3000, np.uint16)
    rgb_at = lambda t: gm.make_image(f, rgb, "rgb8", gm.make_header(f, t, "camera"))  # noqa: E731
    th_at = lambda t: gm.make_image(f, th, "mono16", gm.make_header(f, t, "thermal"))  # noqa: E731
    pipeline = _FakeFusion()
    stage = FusionStage(pipeline, f, SyncConfig(slop_s=0.05), sensor_timeout_s=0.5)

    assert stage.feed("rgb", rgb_at(0), now_ns=0) is None                     # waits for its partner
    out = stage.feed("thermal", th_at(20 * MS), now_ns=20 * MS)
    assert out.stamp_ns == 0 and out.frame["skew_ms"] == pytest.approx(20.0)   # the RGB stamp, 20 ms skew
    assert list(out.messages["fusion_weights"].degraded_sensors) == []
    # Thermal silent for more than the timeout: RGB alone, at once, and said so.
    out = stage.feed("rgb", rgb_at(1000 * MS), now_ns=1000 * MS)
    assert list(out.messages["fusion_weights"].degraded_sensors) == ["thermal"] and pipeline.calls[-1][1] is None
    assert "thermal" in stage.state
    # RGB silent: thermal alone with a black RGB frame of the thermal size.
    out = stage.feed("thermal", th_at(3000 * MS), now_ns=3000 * MS)
    black, thermal = pipeline.calls[-1]
    assert list(out.messages["fusion_weights"].degraded_sensors) == ["rgb"]
    assert black.shape == (4, 6, 3) and not black.any() and thermal.shape == (4, 6)
    with pytest.raises(gm.ConversionError) as exc:
        stage.feed("thermal", th_at(2000 * MS), now_ns=3100 * MS)
    assert exc.value.reason == "stamp_backwards"


def test_fusion_stage_resumes_at_the_first_frame_of_a_looped_sequence():
    """Stamps 0..4 s then 0..4 s again, as ``ros2 bag play --loop`` gives: the first repeated pair is fused, and
    the restart is counted; a small step back is still rejected."""
    from glassbox import msg as gm
    from glassbox.bag.typestore import make_typestore
    from glassbox.stages import FusionStage

    f = gm.RosbagsFactory(make_typestore())
    rgb, th = np.full((4, 6, 3), 200, np.uint8), np.full((4, 6), 3000, np.uint16)
    stage = FusionStage(_FakeFusion(), f, SyncConfig(slop_s=0.05), sensor_timeout_s=60.0)
    fused, now = [], 0
    for loop in range(2):
        for i in range(5):
            now += 100 * MS
            stage.feed("thermal", gm.make_image(f, th, "mono16", gm.make_header(f, i * 1000 * MS, "thermal")), now)
            out = stage.feed("rgb", gm.make_image(f, rgb, "rgb8", gm.make_header(f, i * 1000 * MS + 10 * MS, "c")),
                             now)
            fused.append((loop, out.stamp_ns // MS) if out is not None else None)
    assert fused == [(loop, i * 1000 + 10) for loop in range(2) for i in range(5)]
    assert stage.stamps.jumps == 2 and stage.dropped() == 0         # one restart per stream
    with pytest.raises(gm.ConversionError) as exc:
        stage.feed("rgb", gm.make_image(f, rgb, "rgb8", gm.make_header(f, 3500 * MS, "c")), now)
    assert exc.value.reason == "stamp_backwards"
