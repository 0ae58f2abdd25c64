"""Randomly malformed inputs (seeded) against real node processes: the LiDAR detector and the segmentation node.

A few hundred PointCloud2 (truncated data, wrong point_step / row_step, missing or broken fields, flipped bytes,
huge width and height, NaN/inf values, the endianness flag flipped) and Image messages (wrong step, unknown
encodings, truncated data, zero size, huge sizes, flipped bytes), with a valid message after every few. Held:
every valid message is answered with its own stamp, the node stays alive and exits 0, its diagnostics count
rejections only under the fixed vocabulary (``glassbox.msg.REASONS``), and its resident memory stays flat.
"""
from __future__ import annotations

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image, PointCloud2, PointField
from std_msgs.msg import Header
from vision_msgs.msg import Detection3DArray

from glassbox import msg as gm
from glassbox.sim import SceneConfig, lidar_preset, make_scene, render_cameras, rgb_camera, scan_lidar
from glassbox_ros import converters as cv

pytestmark = pytest.mark.ros
MALFORMED, VALID_EVERY = 240, 8        # malformed messages per node, and a valid one after every VALID_EVERY
RSS_GROWTH_BOUND_MIB = 48.0            # mean RSS of the last third of the run minus that of the first third


def _header(stamp_ns: int, frame: str) -> Header:
    h = Header(frame_id=frame)
    h.stamp.sec, h.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return h


def _flip_bytes(rng: np.random.Generator, data: bytes, n: int) -> bytes:
    buf = np.frombuffer(data, np.uint8).copy()
    at = rng.integers(0, buf.size, n)
    buf[at] = rng.integers(0, 256, n)
    return buf.tobytes()


def _cloud_mutations(cloud: np.ndarray):
    """Mutations of a good cloud message: each takes (rng, message) and changes the message in place."""
    def truncate(rng, m):
        m.data = bytes(m.data)[:int(rng.integers(0, len(m.data)))]

    def point_step(rng, m):
        m.point_step = max(0, int(m.point_step) + int(rng.choice([-12, -4, -1, 1, 4, 9])))

    def row_step(rng, m):
        m.row_step = int(rng.integers(0, 2 * int(m.row_step)))

    def missing_field(rng, m):
        drop = rng.choice(["x", "y", "z", "intensity"])
        m.fields = [f for f in m.fields if f.name != drop]

    def broken_field(rng, m):
        fields = list(m.fields)
        i = int(rng.integers(len(fields)))
        f = fields[i]
        fields[i] = PointField(name=f.name if rng.random() < 0.8 else "", offset=int(rng.integers(0, 64)),
                               datatype=int(rng.integers(0, 12)), count=int(rng.integers(0, 4)))
        if rng.random() < 0.2:
            fields.append(fields[i])                          # the same name twice
        m.fields = fields

    def flip(rng, m):
        m.data = _flip_bytes(rng, bytes(m.data), int(rng.integers(1, 200)))

    def huge(rng, m):
        m.width, m.height = int(rng.choice([2 ** 31, 2 ** 32 - 1, len(cloud) * 1000])), int(rng.integers(1, 2 ** 20))

    def non_finite(rng, m):
        bad, share = cloud.copy(), rng.choice([0.01, 0.3, 1.0])
        for name in ("x", "y", "z", "intensity"):
            mask = rng.random(len(bad)) < share
            bad[name][mask] = rng.choice([np.nan, np.inf, -np.inf, 1e38], int(mask.sum()))
        m.data = cv.build.pointcloud2(bad, m.header).data

    def endian(rng, m):
        m.is_bigendian = not m.is_bigendian

    def empty(rng, m):
        m.width, m.row_step, m.data = 0, 0, b""
    return [truncate, point_step, row_step, missing_field, broken_field, flip, huge, non_finite, endian, empty]


def _image_mutations(rgb: np.ndarray):
    def step(rng, m):
        m.step = max(0, int(m.step) + int(rng.choice([-3, -1, 1, 7, 1000])))

    def encoding(rng, m):
        m.encoding = str(rng.choice(["", "rgb", "RGB8", "yuv422_weird", "mono16", "bgra8", "32FC1", "jpeg",
                                     "bayer_xxxx8", "rgb8 ", "\u00e9"]))

    def truncate(rng, m):
        m.data = bytes(m.data)[:int(rng.integers(0, len(m.data)))]

    def zero(rng, m):
        m.width, m.height = (0, int(m.height)) if rng.random() < 0.5 else (int(m.width), 0)

    def huge(rng, m):
        m.width, m.height = int(rng.choice([2 ** 31, 2 ** 32 - 1, 100_000])), int(rng.integers(1, 2 ** 16))

    def flip(rng, m):
        m.data = _flip_bytes(rng, bytes(m.data), int(rng.integers(1, 500)))

    def odd_yuv(rng, m):
        m.encoding, m.width, m.step = "yuv422", int(m.width) - 1, 2 * (int(m.width) - 1)
        m.data = bytes(m.data)[:m.step * int(m.height)]
    return [step, encoding, truncate, zero, huge, flip, odd_yuv]


def _lidar_good():
    scan = scan_lidar(make_scene(3, SceneConfig()), lidar_preset("vlp16"), np.eye(4), seed=3)
    cloud = gm.xyz_to_structured(scan.points, extra={"ring": scan.ring.astype(np.uint16)})
    return cloud, lambda stamp: cv.build.pointcloud2(cloud, _header(stamp, "lidar"))


def _camera_good():
    frame = render_cameras(make_scene(5, SceneConfig()), rgb_camera(width=160, height=128), None, np.eye(4), "day", 5)
    rgb = np.ascontiguousarray(frame.rgb)
    return rgb, lambda stamp: cv.build.image(rgb, "rgb8", _header(stamp, "camera"))


CASES = {  # node -> (executable, namespace, card, input topic and type, answer topic and type, good, mutations)
    "lidar_detector": ("lidar_detector_node", "/glassbox/lidar", "lidar", "points", PointCloud2, "detections",
                       Detection3DArray, _lidar_good, _cloud_mutations),
    "segmentation": ("segmentation_node", "/glassbox/segmentation", "segmentation", "rgb/image", Image, "labels",
                     Image, _camera_good, _image_mutations),
}


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for process {pid}")


def _last_status(diags: list, node_name: str):
    for m in reversed(diags):
        for s in m.status:
            if s.name.endswith(node_name):
                return s
    return None


@pytest.mark.parametrize("node_name", list(CASES))
def test_malformed_inputs_are_rejected_within_the_vocabulary_and_valid_ones_answered(
        node_name, model_cards, ros_client, start_node):
    executable, ns, card, in_topic, in_type, out_suffix, out_type, make_good, make_mutations = CASES[node_name]
    payload, good = make_good()
    mutations = make_mutations(payload)
    node = start_node(executable, namespace=ns, params={"model_card": str(model_cards[card]),
                                                        "diagnostics_period_s": 0.2,
                                                        "skip_without_subscribers": False})
    answers = ros_client.subscribe(out_type, f"{ns}/{out_suffix}")
    diags = ros_client.subscribe(DiagnosticArray, "/diagnostics")
    pub = ros_client.publisher(in_type, f"{ns}/{in_topic}")
    ros_client.wait_for_subscribers(pub, timeout=120)
    ros_client.wait_for_publishers([f"{ns}/{out_suffix}"], timeout=120)

    rng = np.random.default_rng(20261203)
    stamp = 1_000 * 10 ** 9
    answered_stamps = {gm.stamp_to_ns(m.header.stamp) for m in answers}

    def send_valid(timeout: float) -> int:
        nonlocal stamp
        stamp += 10 ** 8
        want, msg = stamp, good(stamp)
        ros_client.publish_until(lambda: pub.publish(msg),
                                 lambda: any(gm.stamp_to_ns(m.header.stamp) == want for m in answers),
                                 timeout=timeout, period=3.0, what=f"the answer to the valid input at {want}")
        return want

    valid_stamps = [send_valid(120)]                                 # discovery done, model warm
    rss, used = [], set()
    for i in range(MALFORMED):
        stamp += 10 ** 8
        mutate = mutations[int(rng.integers(len(mutations)))]
        msg = good(stamp)
        mutate(rng, msg)
        used.add(mutate.__name__)
        pub.publish(msg)
        ros_client.spin_for(0.02)
        if (i + 1) % VALID_EVERY == 0:
            valid_stamps.append(send_valid(60))
            rss.append(_rss_mib(node.proc.pid))
        assert node.alive(), node.log()[-3000:]
    answered_stamps = {gm.stamp_to_ns(m.header.stamp) for m in answers}
    assert set(valid_stamps) <= answered_stamps
    assert used == {m.__name__ for m in mutations}

    # every rejection counted under a word of the vocabulary, and the common ones seen
    ros_client.spin_for(1.0)
    status = _last_status(diags, node_name)
    assert status is not None
    keys = {kv.key for kv in status.values if kv.key.startswith("rejected/")}
    assert keys == {f"rejected/{r}" for r in gm.REASONS}
    rejected = {k: int(v) for k, v in gm.status_values(status, "rejected/").items() if v != "0"}
    assert {"size_mismatch", "bad_layout"} <= set(rejected), rejected
    assert sum(rejected.values()) >= MALFORMED // 2, rejected
    if node_name == "lidar_detector":
        values = gm.status_values(status, "dropped_points/")
        assert {"missing_field", "bad_field", "empty"} <= set(rejected), rejected
        assert int(values["nonfinite"]) > 0 and int(values["out_of_range"]) > 0, values
    else:
        assert {"bad_encoding", "zero_size"} <= set(rejected), rejected

    third = len(rss) // 3
    growth = float(np.mean(rss[-third:]) - np.mean(rss[:third]))
    print(f"{node_name}: {len(valid_stamps)} valid answered, rejected {rejected}, RSS {rss[0]:.1f} -> "
          f"{rss[-1]:.1f} MiB (growth first -> last third {growth:+.1f} MiB)")
    assert growth < RSS_GROWTH_BOUND_MIB, rss
    assert node.alive() and node.stop() == 0, node.log()[-3000:]
