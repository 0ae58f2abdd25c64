"""Offline replay: an unusual bag with a topic map, one-to-one output stamps, metrics, the CLI, and bad bags."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from conftest import replay_config
from support_bags import write_unusual_bag
from rosbags.highlevel import AnyReader

from glassbox.bag.replay import ReplayError, replay
from glassbox.bag.typestore import make_typestore

MAP = {"lidar": "/velodyne_points", "rgb": "/cam/front/image_color", "thermal": "/flir/image_raw"}


def read_stamps(bag: Path) -> dict[str, list[int]]:
    """Header stamps (ns) per topic of an output bag; also proves every message deserialises."""
    out = defaultdict(list)
    with AnyReader([bag], default_typestore=make_typestore()) as r:
        for c, _, raw in r.messages():
            msg = r.deserialize(raw, c.msgtype)
            header = getattr(msg, "header", None) or msg.markers[0].header
            out[c.topic].append(header.stamp.sec * 1_000_000_000 + header.stamp.nanosec)
    return dict(out)


@pytest.fixture(scope="module")
def unusual_bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("bags") / "unusual"
    return path, write_unusual_bag(path, storage="sqlite3", camera_info=True)


def test_unusual_sqlite3_bag_replays_one_to_one(unusual_bag, cards, tmp_path):
    bag, stamps = unusual_bag
    result = replay(bag, tmp_path / "out", replay_config(cards), topic_map=MAP)
    out = read_stamps(tmp_path / "out")
    for suffix in ("detections", "markers", "detection_uncertainty", "entropy"):
        assert out[f"/glassbox/lidar/{suffix}"] == stamps["lidar"], suffix
    for topic in ("/glassbox/refiner/image_refined", "/glassbox/segmentation/labels",
                  "/glassbox/segmentation/uncertainty_map", "/glassbox/segmentation/overlay",
                  "/glassbox/refiner/camera_info", "/glassbox/segmentation/camera_info"):
        assert out[topic] == stamps["rgb"], topic
    # The label maps: once per detector (and for the segmentation labels), stamped with its first output.
    for cap, first in (("lidar", stamps["lidar"][0]), ("fusion", stamps["rgb"][0]),
                       ("segmentation", stamps["rgb"][0])):
        assert out[f"/glassbox/{cap}/label_info"] == [first], cap
    # RGB and thermal are 30 ms apart (slop 50 ms): every RGB frame is fused exactly once, with the RGB stamp.
    assert out["/glassbox/fusion/detections"] == stamps["rgb"]
    assert out["/glassbox/fusion/fusion_weights"] == stamps["rgb"]
    assert all(f["skew_ms"] == pytest.approx(30.0) for f in result.frames if f["capability"] == "fusion")
    assert len(out["/diagnostics"]) == sum(len(v) for k, v in out.items() if k.endswith("/entropy"))
    assert result.metrics["lidar"] == "no ground truth in the bag"
    assert result.metrics["frames"] == {"lidar": 3, "refiner": 3, "segmentation": 3, "fusion": 3}


def test_topics_found_by_type_and_encoding_without_a_map(unusual_bag, cards, tmp_path):
    bag, _ = unusual_bag
    result = replay(bag, tmp_path / "out", replay_config(cards, capabilities=("lidar", "fusion")))
    assert result.topics == {**MAP, "rgb_info": "/cam/front/camera_info"}   # the camera_info beside the image


def test_camera_info_from_the_bag_comes_out_scaled_with_the_image(unusual_bag, cards, tmp_path):
    """The bag's CameraInfo (full-resolution K, 2x2 binning) reaches the refiner, and through the refiner's own
    camera_info the segmentation, as on the robot; both publish the K of the 320x256 images they output."""
    from support_bags import RGB_K_FULL
    from glassbox import msg as gm
    bag, stamps = unusual_bag
    replay(bag, tmp_path / "out", replay_config(cards, capabilities=("refiner", "segmentation")), topic_map=MAP)
    with AnyReader([tmp_path / "out"], default_typestore=make_typestore()) as r:
        infos = {c.topic: [gm.camera_model_from_info(r.deserialize(raw, c.msgtype))
                           for _, _, raw in r.messages(connections=[c])]
                 for c in r.connections if c.topic.endswith("/camera_info")}
    assert sorted(infos) == ["/glassbox/refiner/camera_info", "/glassbox/segmentation/camera_info"]
    for models in infos.values():
        assert len(models) == len(stamps["rgb"])
        for m in models:
            assert (m.width, m.height) == (320, 256)
            np.testing.assert_allclose(m.k, np.diag([0.5, 0.5, 1.0]) @ RGB_K_FULL)


def test_cli_replay_writes_bag_report_and_metrics(tmp_path, cards):
    bag = tmp_path / "gt.mcap"
    write_unusual_bag(bag, storage="mcap", frames=2, with_gt=True)
    cfg = tmp_path / "replay.yaml"
    cfg.write_text("\n".join(f"{k}_card: {v}" for k, v in cards.items()) + "\ncapabilities: [fusion]\n"
                   "sensor_timeout_s: 2.0\n")
    res = subprocess.run([sys.executable, "-m", "glassbox.cli", "replay", str(bag), "--out", str(tmp_path / "out"),
                          "--config", str(cfg), "--report", str(tmp_path / "report"), "--quiet",
                          "--map", "rgb=/cam/front/image_color,thermal=/flir/image_raw,gt_rgb=/truth/rgb/detections"],
                         capture_output=True, text=True, env=os.environ, timeout=600)
    assert res.returncode == 0, res.stderr
    metrics = json.loads((tmp_path / "report/metrics.json").read_text())["metrics"]
    assert metrics["fusion"]["all"]["frames"] == 2 and 0.0 <= metrics["fusion"]["all"]["map50"] <= 1.0
    html = (tmp_path / "report/report.html").read_text()
    assert "fusion" in html and "fusion_0.png" in html and (tmp_path / "report/fusion_0.png").is_file()


# ------------------------------------------------------------------------------------------------ bad bags
@pytest.fixture(scope="module")
def mcap_bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("mcap") / "drive"
    write_unusual_bag(path, storage="mcap", frames=3, empty_topic=True)
    return next(path.glob("*.mcap"))


def test_truncated_bag_clear_message_and_valid_empty_output(mcap_bag, cards, tmp_path):
    data = mcap_bag.read_bytes()
    bad = tmp_path / "truncated.mcap"
    bad.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ReplayError, match="truncated"):
        replay(bad, tmp_path / "out", replay_config(cards, capabilities=("lidar",)))
    assert read_stamps(tmp_path / "out") == {}


def test_corrupt_chunk_keeps_everything_before_it(mcap_bag, cards, tmp_path):
    data = bytearray(mcap_bag.read_bytes())
    # Damage the last LiDAR chunk's payload: the messages before it still replay.
    at = data.rfind(b"velodyne")
    cut = len(data) * 3 // 4 if at < 0 else at + 200
    data[cut:cut + 4000] = np.random.default_rng(0).integers(0, 255, 4000, dtype=np.uint8).tobytes()
    bad = tmp_path / "corrupt.mcap"
    bad.write_bytes(bytes(data))
    try:
        replay(bad, tmp_path / "out", replay_config(cards, capabilities=("lidar",)), topic_map={"lidar": MAP["lidar"]})
    except ReplayError as exc:
        assert "corrupt" in str(exc) or "cannot open" in str(exc)
    else:
        pytest.fail("a damaged bag replayed without an error")
    read_stamps(tmp_path / "out")   # the output bag is valid whatever was processed


def test_wrong_type_for_a_role_and_missing_topic(mcap_bag, cards, tmp_path):
    with pytest.raises(ReplayError, match="must carry sensor_msgs/msg/PointCloud2"):
        replay(mcap_bag, tmp_path / "a", replay_config(cards), topic_map={"lidar": MAP["rgb"]})
    with pytest.raises(ReplayError, match="no topic '/nope'"):
        replay(mcap_bag, tmp_path / "b", replay_config(cards), topic_map={"lidar": "/nope"})


def test_empty_topic_and_missing_ground_truth_are_reported(mcap_bag, cards, tmp_path):
    result = replay(mcap_bag, tmp_path / "out", replay_config(cards, capabilities=("lidar",)),
                    topic_map={"lidar": "/unused/points"})
    assert any("/unused/points" in w and "no messages" in w for w in result.warnings)
    assert result.metrics["frames"] == {}


def test_shipped_replay_config_loads():
    from glassbox.bag.replay import ReplayConfig
    from glassbox.config import load_config
    cfg = load_config(Path(__file__).resolve().parents[2] / "config/replay.yaml", ReplayConfig)
    assert cfg == ReplayConfig()   # the file documents the defaults, and only them


TOY_CAPABILITY = '''
"""A capability added through the capability table alone: mean brightness of the refined image."""
import numpy as np

from glassbox.capabilities import Capability, Stream, register
from glassbox.stages.camera import RefinerStage


class ToyStage(RefinerStage):
    capability = "toy_brightness"


def toy_metrics(frames, ground_truth):
    return {"all": {"frames": len(frames), "mean_ms": float(np.mean([sum(f["timings_ms"].values()) for f in frames]))}}


register(Capability(
    name="toy_brightness", task="measurement", inputs=(Stream("image", "sensor_msgs/msg/Image", "rgb"),),
    outputs={"image_refined": "sensor_msgs/msg/Image", "entropy": "glassbox_msgs/msg/EntropyProfile"},
    stage="toy_capability:ToyStage", pipeline="glassbox.pipelines.refiner:RefinerPipeline",
    default_card="refiner.card.yaml", node="toy_node", node_name="toy", namespace="toy",
    params_file="image_refiner.yaml", train_task="refiner", metrics="toy_capability:toy_metrics",
    title="Toy brightness"))
'''


def test_a_capability_added_through_the_table_alone_is_replayed_and_reported(unusual_bag, cards, tmp_path,
                                                                              monkeypatch):
    from glassbox import capabilities
    from glassbox.bag.report import write_report
    (tmp_path / "toy_capability.py").write_text(TOY_CAPABILITY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("GLASSBOX_CAPABILITIES", "toy_capability")
    try:
        bag, stamps = unusual_bag
        from dataclasses import replace
        cfg = replace(replay_config(cards), capabilities=("lidar", "toy_brightness"),
                      cards={"toy_brightness": str(cards["refiner"])})
        result = replay(bag, tmp_path / "out", cfg, topic_map=MAP)
        out = read_stamps(tmp_path / "out")
        assert out["/glassbox/toy/image_refined"] == stamps["rgb"]
        assert out["/glassbox/toy/entropy"] == stamps["rgb"]
        assert result.metrics["toy_brightness"]["all"]["frames"] == len(stamps["rgb"])
        assert result.metrics["frames"] == {"lidar": 3, "toy_brightness": 3}
        html = write_report(result, tmp_path / "report").read_text()
        assert "<h3>Toy brightness</h3>" in html and "mean_ms" in html
    finally:
        capabilities.CAPABILITIES.pop("toy_brightness", None)
        capabilities._PLUGINS_LOADED.discard("toy_capability")
        sys.modules.pop("toy_capability", None)
