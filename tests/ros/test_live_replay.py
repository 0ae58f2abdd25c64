"""Live replay: the bag played into the real node processes over DDS gives the same detections as the offline
replay of the same frames."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from glassbox import msg as mc
from glassbox.bag.live import live_replay
from glassbox.bag.replay import ReplayConfig, replay
from glassbox.bag.typestore import make_typestore
from support_bags import write_unusual_bag

pytestmark = pytest.mark.ros


def detections_by_stamp(bag: Path, topic: str, kind: str) -> dict[int, np.ndarray]:
    out = {}
    with AnyReader([bag], default_typestore=make_typestore()) as r:
        for c, _, raw in r.messages(connections=[c for c in r.connections if c.topic == topic]):
            msg = r.deserialize(raw, c.msgtype)
            stamp = mc.stamp_to_ns(msg.header.stamp)
            if kind == "3d":
                d = mc.detection3d_array_to_numpy(msg)
                out[stamp] = np.concatenate([d.centers, d.sizes, d.yaw[:, None], d.scores[:, None]], 1)
            else:
                d = mc.detection2d_array_to_numpy(msg)
                out[stamp] = np.concatenate([d.boxes_xyxy, d.scores[:, None]], 1)
    return out


def test_live_outputs_match_offline_replay(tmp_path, model_cards):
    bag = tmp_path / "in"
    write_unusual_bag(bag, storage="mcap", frames=3)
    cfg = ReplayConfig(capabilities=("lidar", "fusion"), lidar_card=str(model_cards["lidar"]),
                       fusion_card=str(model_cards["fusion"]))
    topic_map = {"lidar": "/velodyne_points", "rgb": "/cam/front/image_color", "thermal": "/flir/image_raw"}
    replay(bag, tmp_path / "offline", cfg, topic_map=topic_map)
    summary = live_replay(bag, tmp_path / "live", cfg, topic_map=topic_map, rate=0.5)
    assert summary.nodes["lidar"]["inputs_sent"] == 3 and summary.nodes["lidar"]["dropped"] == 0
    assert summary.nodes["fusion"]["outputs_received"] == 3
    for topic, kind in (("/glassbox/lidar/detections", "3d"), ("/glassbox/fusion/detections", "2d")):
        offline = detections_by_stamp(tmp_path / "offline", topic, kind)
        live = detections_by_stamp(tmp_path / "live", topic, kind)
        assert sorted(live) == sorted(offline) and len(live) == 3, topic
        for stamp in offline:
            assert live[stamp].shape == offline[stamp].shape, (topic, stamp)
            np.testing.assert_allclose(live[stamp], offline[stamp], atol=1e-4)
