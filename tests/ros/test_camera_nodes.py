"""Camera nodes as real processes: every output topic with the input's header, camera_info out scaled to the
output images, compressed input, label maps for late subscribers, malformed images rejected and counted while
the node keeps serving, the fusion node building its homography from camera_info and a calibration file, and
degrading to RGB when the thermal stream stops."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from glassbox_msgs.msg import DetectionUncertaintyArray, EntropyProfile, FusionWeights
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray, LabelInfo

from glassbox.calibration import pinhole
from glassbox.sim import SceneConfig, make_scene, render_cameras, render_thermal, rgb_camera, thermal_camera
from glassbox import msg as gm
from glassbox_ros import converters as cv
from harness import REPO

# Discovery is not symmetric in time: the node may not yet see the test's subscriptions when the first input
# arrives, and would then (correctly) skip it. These tests are about outputs, so the node always runs;
# test_skips_inference_without_subscribers covers the skipping.
ALWAYS_RUN = {"skip_without_subscribers": False}

pytestmark = pytest.mark.ros

NODES = {  # executable -> (config, namespace, card key, inputs, outputs)
    "image_refiner_node": ("image_refiner.yaml", "/glassbox/refiner", "refiner", ["rgb/image"],
                           {"image_refined": Image, "camera_info": CameraInfo, "entropy": EntropyProfile}),
    "segmentation_node": ("segmentation.yaml", "/glassbox/segmentation", "segmentation", ["rgb/image"],
                          {"labels": Image, "overlay": Image, "uncertainty_map": Image, "camera_info": CameraInfo,
                           "entropy": EntropyProfile}),
}
FUSION_OUT = {"detections": Detection2DArray, "fusion_weights": FusionWeights, "overlay": Image,
              "detection_uncertainty": DetectionUncertaintyArray, "entropy": EntropyProfile}
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
#: the RGB camera as calibrated (640x512) and published 2x2-binned: the 320x256 test frames
K_FULL = np.array([[540.0, 0.0, 322.0], [0.0, 536.0, 254.0], [0.0, 0.0, 1.0]])
K_BINNED = np.diag([0.5, 0.5, 1.0]) @ K_FULL


@pytest.fixture(scope="module")
def frames():
    """A synthetic RGB (bgr8, as many drivers publish) and thermal (mono16) frame pair."""
    scene = make_scene(5, SceneConfig())
    cam = rgb_camera(width=320, height=256)
    f = render_cameras(scene, cam, None, np.eye(4), "day", 5)
    th = render_thermal(scene, thermal_camera(width=320, height=256), np.eye(4), "day", 5)
    return f.rgb, th.thermal16


def _msg(arr, encoding, sec, frame="camera"):
    h = Header(frame_id=frame)
    h.stamp.sec = sec
    return cv.build.image(np.ascontiguousarray(arr), encoding, h)


def _camera_info(sec: int, k: np.ndarray = K_FULL, size=(640, 512), binning: int = 2) -> CameraInfo:
    h = Header(frame_id="camera")
    h.stamp.sec = sec
    info = cv.build.camera_info(pinhole(k, *size), h)
    info.binning_x = info.binning_y = binning
    return info


def _assert_scaled_camera_info(info: CameraInfo, sec: int) -> None:
    """The camera_info of a 320x256 output image of the binned camera, with the input image's header."""
    assert (info.header.stamp.sec, info.header.frame_id, info.width, info.height) == (sec, "camera", 320, 256)
    assert (info.binning_x, info.binning_y) == (0, 0)
    np.testing.assert_allclose(np.reshape(info.k, (3, 3)), K_BINNED)
    np.testing.assert_allclose(np.reshape(info.p, (3, 4))[:, :3], K_BINNED)


def _diag_value(diags, node_name, key):
    for m in reversed(diags):
        for s in m.status:
            if s.name.endswith(node_name):
                return next((kv.value for kv in s.values if kv.key == key), None)
    return None


def _rejected(diags, node_name):
    for m in reversed(diags):
        for s in m.status:
            if s.name.endswith(node_name):
                return {k: int(v) for k, v in gm.status_values(s, "rejected/").items() if v != "0"}
    return {}


@pytest.mark.parametrize("executable", list(NODES))
def test_camera_node_outputs_and_rejections(executable, frames, model_cards, ros_client, start_node):
    config, ns, card, inputs, outputs = NODES[executable]
    node = start_node(executable, params_file=REPO / "config" / config, namespace=ns,
                      params={"model_card": str(model_cards[card]), "diagnostics_period_s": 0.2, **ALWAYS_RUN})
    for suffix, typ in outputs.items():
        ros_client.subscribe(typ, f"{ns}/{suffix}")
    diags = ros_client.subscribe(DiagnosticArray, "/diagnostics")
    pub = ros_client.publisher(Image, f"{ns}/{inputs[0]}")
    pub_info = ros_client.publisher(CameraInfo, f"{ns}/rgb/camera_info")     # beside the image topic
    ros_client.wait_for_subscribers(pub, timeout=120)
    ros_client.wait_for_subscribers(pub_info, timeout=120)
    ros_client.wait_for_publishers([f"{ns}/{s}" for s in outputs], timeout=120)
    rgb = frames[0]
    first = _msg(rgb[:, :, ::-1], "bgr8", 10)
    ros_client.publish_until(lambda: (pub_info.publish(_camera_info(9)), ros_client.spin_for(0.2), pub.publish(first)),
                             lambda: all(ros_client.received[f"{ns}/{s}"] for s in outputs))
    for suffix in outputs:
        msg = ros_client.wait_for_messages(f"{ns}/{suffix}", timeout=120)[0]
        assert (msg.header.stamp.sec, msg.header.frame_id) == (10, "camera"), suffix
    _assert_scaled_camera_info(ros_client.received[f"{ns}/camera_info"][0], 10)
    if executable == "segmentation_node":
        labels = ros_client.received[f"{ns}/labels"][0]
        unc = ros_client.received[f"{ns}/uncertainty_map"][0]
        assert (labels.encoding, unc.encoding, labels.height, labels.width) == ("mono8", "32FC1", 256, 320)
        assert np.isfinite(gm.image_to_array(unc)).all()
    else:
        refined = ros_client.received[f"{ns}/image_refined"][0]
        assert refined.encoding == "bgr8" and (refined.height, refined.width) == (256, 320)

    wrong_encoding = _msg(frames[1].astype(np.float32), "32FC1", 11)    # a depth image is no camera image
    short = _msg(rgb, "rgb8", 12)
    short.data = bytes(short.data)[:-5]
    empty = Image(header=Header(frame_id="camera"), height=0, width=0, encoding="rgb8", step=0)
    empty.header.stamp.sec = 13
    backwards = _msg(rgb, "rgb8", 9)               # 0.5 s before the last accepted frame (10 s): rejected
    backwards.header.stamp.nanosec = 500_000_000
    for m in (wrong_encoding, short, empty, backwards):
        pub.publish(m)
        ros_client.spin_for(0.1)
    name = executable.replace("_node", "")
    bad_info = _camera_info(14)
    bad_info.width = 0
    pub_info.publish(bad_info)
    ros_client.spin_until(lambda: sum(_rejected(diags, name).values()) >= 5, 30, "5 rejections in diagnostics")
    rej = _rejected(diags, name)
    assert rej.get("stamp_backwards") == 1 and rej.get("zero_size") == 2 and len(rej) == 4, rej
    n = len(ros_client.received[f"{ns}/entropy"])
    pub.publish(_msg(rgb, "rgb8", 20))
    ros_client.wait_for_messages(f"{ns}/entropy", count=n + 1, timeout=120)
    assert node.alive() and node.stop() == 0, node.log()


def test_segmentation_node_takes_compressed_images_and_keeps_its_label_map(frames, model_cards, ros_client,
                                                                           start_node):
    """image_transport: compressed: JPEG frames on rgb/image/compressed give outputs of the decoded size, with the
    camera_info beside them scaled; the label map reaches a subscriber that comes later (transient local)."""
    ns = "/glassbox/segmentation"
    start_node("segmentation_node", params_file=REPO / "config/segmentation.yaml", namespace=ns,
               params={"model_card": str(model_cards["segmentation"]), "image_transport": "compressed",
                       "diagnostics_period_s": 0.2, **ALWAYS_RUN})
    for suffix, typ in (("labels", Image), ("uncertainty_map", Image), ("camera_info", CameraInfo)):
        ros_client.subscribe(typ, f"{ns}/{suffix}")
    diags = ros_client.subscribe(DiagnosticArray, "/diagnostics")
    pub = ros_client.publisher(CompressedImage, f"{ns}/rgb/image/compressed")
    pub_info = ros_client.publisher(CameraInfo, f"{ns}/rgb/camera_info")
    ros_client.wait_for_subscribers(pub, timeout=120)
    ros_client.wait_for_subscribers(pub_info, timeout=120)
    ros_client.wait_for_publishers([f"{ns}/labels", f"{ns}/camera_info"], timeout=120)
    header = Header(frame_id="camera")
    header.stamp.sec = 40
    jpeg = cv.build.compressed_image(np.ascontiguousarray(frames[0][:, :, ::-1]), "bgr8", header, kind="jpeg")
    assert jpeg.format == "bgr8; jpeg compressed bgr8"
    ros_client.publish_until(lambda: (pub_info.publish(_camera_info(39)), ros_client.spin_for(0.2), pub.publish(jpeg)),
                             lambda: bool(ros_client.received[f"{ns}/labels"] and
                                          ros_client.received[f"{ns}/camera_info"]))
    labels = ros_client.received[f"{ns}/labels"][0]
    assert (labels.header.stamp.sec, labels.height, labels.width) == (40, 256, 320)
    _assert_scaled_camera_info(ros_client.received[f"{ns}/camera_info"][0], 40)
    ros_client.spin_until(lambda: _diag_value(diags, "segmentation", "rgb/image_transport") == "compressed", 30,
                          "the transport in the diagnostics")
    assert _diag_value(diags, "segmentation", "rgb/camera_info") == f"{ns}/rgb/camera_info"

    ros_client.subscribe(LabelInfo, f"{ns}/label_info", LATCHED)
    info = ros_client.wait_for_messages(f"{ns}/label_info", timeout=60)[0]
    assert gm.label_info_to_names(info) == {0: "background", 1: "traversable"}      # the test card's classes
    assert int(np.asarray(gm.image_to_array(labels)).max()) < len(info.class_map)


def test_fusion_node_pairs_then_degrades_to_rgb(frames, model_cards, ros_client, start_node, tmp_path):
    ns = "/glassbox/fusion"
    calibration = tmp_path / "fusion_calibration.yaml"        # the extrinsic only: intrinsics from camera_info
    calibration.write_text("rgb_T_thermal:\n  translation: [0.05, 0.0, 0.0]\n  rotation: [0.0, 0.0, 0.0, 1.0]\n")
    node = start_node("fusion_node", params_file=REPO / "config/fusion.yaml", namespace=ns,
                      params={"model_card": str(model_cards["fusion"]), "sensor_timeout_s": 4.0,
                              "calibration_file": str(calibration), "diagnostics_period_s": 0.2, **ALWAYS_RUN})
    for suffix, typ in FUSION_OUT.items():
        ros_client.subscribe(typ, f"{ns}/{suffix}")
    diags = ros_client.subscribe(DiagnosticArray, "/diagnostics")
    pub_rgb = ros_client.publisher(Image, f"{ns}/rgb/image")
    pub_th = ros_client.publisher(Image, f"{ns}/thermal/image")
    pub_info = {role: ros_client.publisher(CameraInfo, f"{ns}/{role}/camera_info") for role in ("rgb", "thermal")}
    for pub in (pub_rgb, pub_th, *pub_info.values()):
        ros_client.wait_for_subscribers(pub, timeout=120)
    ros_client.wait_for_publishers([f"{ns}/{s}" for s in FUSION_OUT], timeout=120)
    infos = {"rgb": _camera_info(29), "thermal": _camera_info(29, np.array([[380.0, 0, 160], [0, 380.0, 128],
                                                                             [0, 0, 1]]), (320, 256), 1)}
    rgb, th = frames
    # Thermal first, then RGB 20 ms later: one approximate-time pair, stamped with the RGB header.
    th_msg = _msg(th, "mono16", 30, "thermal")
    th_msg.header.stamp.nanosec = 0
    rgb_msg = _msg(rgb, "rgb8", 30)
    rgb_msg.header.stamp.nanosec = 20_000_000
    at_30 = lambda m: (m.header.stamp.sec, m.header.stamp.nanosec) == (30, 20_000_000)  # noqa: E731  (the RGB stamp)
    # Camera infos and pairs of fresh stamps until a pair is fused with the homography of both camera_infos and
    # the calibration file's extrinsic (best-effort samples sent before the node's reader matched are lost).
    expected = ("intrinsics rgb: camera_info, thermal: camera_info; extrinsic: calibration file; "
                "plane at 20 m")
    early = iter(range(1, 30))

    def send_early_pair() -> None:
        t = next(early)
        for r in infos:
            pub_info[r].publish(infos[r])
        pub_th.publish(_msg(th, "mono16", t, "thermal"))
        ros_client.spin_for(0.2)
        pub_rgb.publish(_msg(rgb, "rgb8", t))
    ros_client.publish_until(send_early_pair, lambda: _diag_value(diags, "fusion", "homography") == expected,
                             what=f"homography source '{expected}' in the diagnostics")
    # The pair is repeated until answered (see publish_until); the synchroniser uses each stamp at most once.
    ros_client.publish_until(lambda: (pub_th.publish(th_msg), ros_client.spin_for(0.2), pub_rgb.publish(rgb_msg)),
                             lambda: any(at_30(m) for m in ros_client.received[f"{ns}/detections"]))
    for suffix in FUSION_OUT:
        msg = ros_client.wait_for_messages(f"{ns}/{suffix}", timeout=120, predicate=at_30)[0]
        assert msg.header.stamp.nanosec == 20_000_000 and msg.header.frame_id == "camera", suffix
    w = [m for m in ros_client.received[f"{ns}/fusion_weights"] if at_30(m)][0]
    assert list(w.sensor_names) == ["rgb", "thermal"] and list(w.degraded_sensors) == []
    assert abs(sum(w.weights) - 1.0) < 1e-6
    ros_client.subscribe(LabelInfo, f"{ns}/label_info", LATCHED)
    info = ros_client.wait_for_messages(f"{ns}/label_info", timeout=60)[0]
    assert gm.label_info_to_names(info) == {0: "car", 1: "pedestrian", 2: "cyclist"}

    # Thermal stops: after the timeout, RGB frames alone still give detections, reported as degraded.
    ros_client.spin_for(4.5)
    pub_rgb.publish(_msg(rgb, "rgb8", 31))
    ws = ros_client.wait_for_messages(f"{ns}/fusion_weights", timeout=60,
                                      predicate=lambda m: m.header.stamp.sec == 31)
    assert list(ws[0].degraded_sensors) == ["thermal"]
    ros_client.wait_for_messages(f"{ns}/detections", timeout=60, predicate=lambda m: m.header.stamp.sec == 31)
    assert node.alive() and node.stop() == 0, node.log()


def test_fusion_sensor_timeout_follows_sim_time(frames, model_cards, ros_client, start_node):
    """With use_sim_time the sensor timeout runs on /clock: wall time passing does not degrade, /clock does."""
    from rosgraph_msgs.msg import Clock
    ns = "/glassbox/fusion"
    node = start_node("fusion_node", params_file=REPO / "config/fusion.yaml", namespace=ns,
                      params={"model_card": str(model_cards["fusion"]), "use_sim_time": True, "sensor_timeout_s": 1.0,
                              **ALWAYS_RUN})
    weights = ros_client.subscribe(FusionWeights, f"{ns}/fusion_weights")
    pub_rgb = ros_client.publisher(Image, f"{ns}/rgb/image")
    pub_th = ros_client.publisher(Image, f"{ns}/thermal/image")
    clock_pub = ros_client.publisher(Clock, "/clock")
    sim_s = [1000.0]

    def tick():
        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = int(sim_s[0]), int(round((sim_s[0] % 1) * 1e9))
        clock_pub.publish(msg)
    ros_client.node.create_timer(0.05, tick)            # /clock at 20 Hz (wall), showing sim_s
    ros_client.wait_for_subscribers(pub_rgb, timeout=120)
    ros_client.wait_for_subscribers(pub_th, timeout=120)
    ros_client.wait_for_publishers([f"{ns}/fusion_weights"], timeout=120)
    rgb, th = frames

    def at(arr, enc, t, frame):
        m = _msg(arr, enc, int(t), frame)
        m.header.stamp.nanosec = int(round((t % 1) * 1e9))
        return m

    def weights_at(t):
        return [w for w in weights if gm.stamp_to_ns(w.header.stamp) == int(round(t * 1e9))]
    pair = (at(th, "mono16", 1000.0, "thermal"), at(rgb, "rgb8", 1000.02, "camera"))
    ros_client.publish_until(lambda: (pub_th.publish(pair[0]), ros_client.spin_for(0.2), pub_rgb.publish(pair[1])),
                             lambda: bool(weights_at(1000.02)))
    # 3 s of wall time, none of sim time: thermal is not silent, the next RGB frame waits for its partner.
    ros_client.spin_for(3.0)
    pub_rgb.publish(at(rgb, "rgb8", 1000.5, "camera"))
    ros_client.spin_for(0.5)
    assert not weights_at(1000.5)
    pub_th.publish(at(th, "mono16", 1000.51, "thermal"))
    ros_client.spin_until(lambda: bool(weights_at(1000.5)), 60, "the fused pair at 1000.5 s")
    assert [list(w.degraded_sensors) for w in weights_at(1000.5)] == [[]]
    # 2 s of sim time at once: thermal is silent past the 1 s timeout, RGB goes alone.
    sim_s[0] = 1002.0
    ros_client.spin_for(0.5)
    pub_rgb.publish(at(rgb, "rgb8", 1001.0, "camera"))
    ros_client.spin_until(lambda: bool(weights_at(1001.0)), 60, "the RGB-only frame at 1001 s")
    assert [list(w.degraded_sensors) for w in weights_at(1001.0)] == [["thermal"]]
    assert node.alive() and node.stop() == 0, node.log()


@pytest.mark.skipif(importlib.util.find_spec("tf2_ros") is None,
                    reason="tf2_ros is not installed here: the extrinsic comes from calibration_file only")
def test_fusion_node_takes_the_extrinsic_from_tf(frames, model_cards, ros_client, start_node):
    """Without a calibration file the thermal -> RGB extrinsic comes from TF (where tf2_ros is installed)."""
    from geometry_msgs.msg import TransformStamped
    from tf2_msgs.msg import TFMessage
    ns = "/glassbox/fusion"
    start_node("fusion_node", params_file=REPO / "config/fusion.yaml", namespace=ns,
               params={"model_card": str(model_cards["fusion"]), "diagnostics_period_s": 0.2, **ALWAYS_RUN})
    diags = ros_client.subscribe(DiagnosticArray, "/diagnostics")
    ros_client.subscribe(Detection2DArray, f"{ns}/detections")
    tf_static = ros_client.publisher(TFMessage, "/tf_static", LATCHED)
    mount = TransformStamped(child_frame_id="thermal")
    mount.header.frame_id = "camera"
    mount.transform.translation.x, mount.transform.rotation.w = 0.05, 1.0
    tf_static.publish(TFMessage(transforms=[mount]))
    pubs = {role: ros_client.publisher(Image, f"{ns}/{role}/image") for role in ("rgb", "thermal")}
    infos = {role: ros_client.publisher(CameraInfo, f"{ns}/{role}/camera_info") for role in ("rgb", "thermal")}
    for pub in (*pubs.values(), *infos.values()):
        ros_client.wait_for_subscribers(pub, timeout=120)
    rgb, th = frames
    sec = iter(range(50, 1000))

    def send():
        t = next(sec)
        infos["rgb"].publish(_camera_info(t))
        infos["thermal"].publish(_camera_info(t, K_BINNED, (320, 256), 1))
        pubs["thermal"].publish(_msg(th, "mono16", t, "thermal"))
        pubs["rgb"].publish(_msg(rgb, "rgb8", t))
    expected = ("intrinsics rgb: camera_info, thermal: camera_info; extrinsic: TF camera <- thermal; "
                "plane at 20 m")
    ros_client.publish_until(send, lambda: _diag_value(diags, "fusion", "homography") == expected, timeout=120,
                             what=f"homography source '{expected}'")
