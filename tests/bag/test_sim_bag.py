"""The synthetic drive as a ROS 2 bag: opens with rosbags' AnyReader, every message deserialises, stamps increase
per topic, headers carry the sensor frames, ground truth matches the sensor data; same seed, same bytes."""
from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from glassbox.bag.typestore import make_typestore
from glassbox.cli import main
from glassbox.msg import detection3d_array_to_numpy, image_to_array, pointcloud2_to_array, stamp_to_ns
from glassbox.sim import rgb_camera, thermal_camera
from glassbox.sim.drive import TOPICS, DriveConfig, DriveError, drive_workers, schedule, usable_cpus, write_drive

CFG = DriveConfig(seconds=0.35, seed=3, lidar="vlp16", rgb=rgb_camera(width=96, height=64),
                  thermal=thermal_camera(width=80, height=64), workers=1, segments=("day", "night"))


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    out = tmp_path_factory.mktemp("drive") / "drive.mcap"
    summary = write_drive(out, CFG)
    return out, summary


def _read(path):
    msgs = {}
    with AnyReader([Path(path)], default_typestore=make_typestore()) as reader:
        for conn, t, raw in reader.messages():
            msgs.setdefault(conn.topic, []).append((t, reader.deserialize(raw, conn.msgtype)))
    return msgs


def test_bag_opens_and_every_message_deserialises(bag):
    path, summary = bag
    msgs = _read(path)
    assert set(msgs) == {topic for topic, _ in TOPICS.values()}
    assert sum(len(v) for v in msgs.values()) == sum(summary.messages.values())
    n = {k: sum(1 for c in schedule(CFG) if c.kind == k) for k in ("lidar", "rgb", "thermal")}
    assert n == {"lidar": 4, "rgb": 6, "thermal": 4}
    assert len(msgs[TOPICS["lidar"][0]]) == n["lidar"] and len(msgs[TOPICS["rgb"][0]]) == n["rgb"]
    for topic, items in msgs.items():
        stamps = [t for t, _ in items]
        assert all(a < b for a, b in zip(stamps, stamps[1:])), topic
        for t, m in items:
            if hasattr(m, "header"):
                assert stamp_to_ns(m.header.stamp) == t, topic


def test_headers_offsets_and_ground_truth(bag):
    msgs = _read(bag[0])
    lidar = msgs[TOPICS["lidar"][0]]
    rgb = msgs[TOPICS["rgb"][0]]
    thermal = msgs[TOPICS["thermal"][0]]
    assert {m.header.frame_id for _, m in lidar} == {"lidar"}
    assert {m.header.frame_id for _, m in rgb} == {"camera_rgb"}
    assert {m.header.frame_id for _, m in thermal} == {"camera_thermal"}
    t_l = np.array([t for t, _ in lidar]) - CFG.start_ns
    t_th = np.array([t for t, _ in thermal]) - CFG.start_ns
    np.testing.assert_allclose(t_l, np.arange(4) * 1e8)
    np.testing.assert_allclose(t_th - t_l, CFG.thermal_offset_s * 1e9, atol=3 * CFG.jitter_s * 1e9 + 1)
    img = image_to_array(rgb[0][1])
    assert img.shape == (64, 96, 3) and rgb[0][1].encoding == "rgb8"
    raw = image_to_array(thermal[0][1])
    assert raw.dtype == np.uint16 and 250 * 100 < raw.mean() < 320 * 100          # kelvin x 100
    labels = msgs[TOPICS["gt_lidar_labels"][0]]
    for (t, cloud), (t2, lab), (t3, det) in zip(lidar, labels, msgs[TOPICS["gt_lidar_boxes"][0]]):
        pts, lab_arr = pointcloud2_to_array(cloud), pointcloud2_to_array(lab)
        assert t == t2 == t3 and len(pts) == len(lab_arr)
        assert {"x", "y", "z", "intensity", "ring", "time"} <= set(pts.dtype.names)
        boxes = detection3d_array_to_numpy(det)
        ids = np.array([int(i) for i in boxes.ids])
        assert set(np.unique(lab_arr["instance"][lab_arr["instance"] > 0])) == set(ids)
    light = [m.data for _, m in msgs[TOPICS["gt_lighting"][0]]]
    assert light[0] == "day" and light[-1] == "night"
    info = msgs[TOPICS["rgb_info"][0]][0][1]
    np.testing.assert_allclose(np.asarray(info.k).reshape(3, 3), CFG.rgb.intrinsics())
    static = msgs[TOPICS["tf_static"][0]][0][1]
    assert {tr.child_frame_id for tr in static.transforms} == {"lidar", "camera_rgb", "camera_thermal"}


def test_same_seed_same_bytes_and_folder_layout(bag, tmp_path):
    again = tmp_path / "drive.mcap"                 # same name: the mcap metadata records it
    write_drive(again, CFG)
    assert again.read_bytes() == bag[0].read_bytes()
    folder = tmp_path / "drive_dir"
    write_drive(folder, DriveConfig(**{**CFG.__dict__, "seconds": 0.1}))
    assert (folder / "metadata.yaml").exists()
    assert len(_read(folder)[TOPICS["lidar"][0]]) == 1
    with pytest.raises(DriveError, match="exists"):
        write_drive(folder, CFG)


def test_worker_processes_write_the_same_bag(tmp_path):
    cfg = DriveConfig(**{**CFG.__dict__, "seconds": 0.15})
    one, two = tmp_path / "a" / "drive.mcap", tmp_path / "b" / "drive.mcap"
    write_drive(one, cfg)
    write_drive(two, DriveConfig(**{**cfg.__dict__, "workers": 2}))
    assert one.read_bytes() == two.read_bytes()
    assert drive_workers(DriveConfig(workers=0)) == usable_cpus() and drive_workers(cfg) == 1
    with pytest.raises(DriveError, match="workers"):
        DriveConfig(workers=-1)


def test_cli_sim(tmp_path):
    out = tmp_path / "cli.mcap"
    rc = main(["sim", "--seconds", "0.1", "--out", str(out), "--lidar", "vlp16", "--width", "64", "--height", "48",
               "--workers", "1", "--quiet"])
    assert rc == 0 and out.exists() and (tmp_path / "cli.calib.yaml").exists()
    assert main(["sim", "--seconds", "0.1", "--out", str(tmp_path / "x.mcap"), "--segments", "noon"]) == 2
