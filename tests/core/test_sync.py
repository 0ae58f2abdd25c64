"""Approximate-time pairing: slop, queue limits, monotonic pairs, no reuse, offline mutual-nearest matching; and
the fusion stage's pairing and sensor-timeout fallback on the caller's clock."""
import numpy as np
import pytest

from glassbox.sync import ApproximateTimeSync, SyncConfig, SyncError

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


# ------------------------------------------------------------------------- the fusion stage's pairing and fallback
class _FakeFusion:
    """Stands in for the GEM pipeline: records its inputs, returns one fixed box."""

    def __init__(self):
        self.calls = []

    def __call__(self, rgb, thermal):
        from types import SimpleNamespace
        self.calls.append((rgb, thermal))
        return SimpleNamespace(class_names=("car",), classes=np.array([0]), boxes=np.array([[1.0, 2.0, 5.0, 6.0]]),
                               scores=np.array([0.9]), rgb_share=0.5 if thermal is not None else 1.0,
                               uncertainty=np.array([0.1]), entropy=None)


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
