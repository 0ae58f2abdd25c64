"""Converters against independent truth: hand-packed bytes, round trips, and both message flavours."""
from __future__ import annotations

import numpy as np
import pytest
from glassbox_msgs.msg import EntropyProfile
from sensor_msgs.msg import Image, PointCloud2, PointField
from std_msgs.msg import Header

from glassbox import msg as gm
from glassbox_ros import converters as cv

F32, F64, U8, U16 = PointField.FLOAT32, PointField.FLOAT64, PointField.UINT8, PointField.UINT16


def _cloud_msg(fields, dtype, records, height=1, row_pad=0, bigendian=False):
    """Pack ``records`` (structured array in ``dtype``) by hand into a PointCloud2."""
    width = records.size // height
    rows = records.reshape(height, width).view(np.uint8).reshape(height, width * dtype.itemsize)
    padded = np.zeros((height, rows.shape[1] + row_pad), np.uint8)
    padded[:, :rows.shape[1]] = rows
    msg = PointCloud2(header=Header(frame_id="lidar"), height=height, width=width, is_bigendian=bigendian,
                      point_step=dtype.itemsize, row_step=rows.shape[1] + row_pad, is_dense=False)
    msg.fields = [PointField(name=n, offset=o, datatype=t, count=1) for n, o, t in fields]
    msg.data = padded.tobytes()
    return msg


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def test_pointcloud_any_field_order_padding_extra_fields(rng):
    # intensity first, then z, x, y, a ring and a float64 time, with 6 bytes of padding in each point.
    dtype = np.dtype({"names": ["intensity", "z", "x", "y", "ring", "t"],
                      "formats": ["<f4", "<f4", "<f4", "<f4", "<u2", "<f8"],
                      "offsets": [0, 4, 8, 12, 16, 24], "itemsize": 40})
    rec = np.zeros(100, dtype)
    for name in ("intensity", "z", "x", "y"):
        rec[name] = rng.normal(size=100)
    rec["ring"] = rng.integers(0, 64, 100)
    rec["t"] = rng.random(100)
    msg = _cloud_msg([("intensity", 0, F32), ("z", 4, F32), ("x", 8, F32), ("y", 12, F32), ("ring", 16, U16),
                      ("t", 24, F64)], dtype, rec)
    xyzi = gm.pointcloud2_to_xyzi(msg)
    np.testing.assert_array_equal(xyzi, np.stack([rec["x"], rec["y"], rec["z"], rec["intensity"]], 1))
    full = gm.pointcloud2_to_array(msg).reshape(-1)
    np.testing.assert_array_equal(full["ring"], rec["ring"])
    np.testing.assert_array_equal(full["t"], rec["t"])


def test_pointcloud_big_endian_organised_row_padding(rng):
    dtype = np.dtype({"names": ["x", "y", "z", "reflectivity"], "formats": [">f4", ">f4", ">f4", "u1"],
                      "offsets": [0, 4, 8, 12], "itemsize": 16})
    rec = np.zeros(2 * 8, dtype)
    for name in ("x", "y", "z"):
        rec[name] = rng.normal(size=16)
    rec["reflectivity"] = rng.integers(0, 255, 16)
    msg = _cloud_msg([("x", 0, F32), ("y", 4, F32), ("z", 8, F32), ("reflectivity", 12, U8)], dtype, rec,
                     height=2, row_pad=12, bigendian=True)
    arr = gm.pointcloud2_to_array(msg)
    assert arr.shape == (2, 8)
    np.testing.assert_array_equal(arr["x"].reshape(-1), rec["x"].astype(np.float32))
    xyzi = gm.pointcloud2_to_xyzi(msg)  # no intensity field -> zeros
    np.testing.assert_array_equal(xyzi[:, 2], rec["z"].astype(np.float32))
    assert (xyzi[:, 3] == 0).all()


def test_pointcloud_nans_kept_or_dropped(rng):
    pts = rng.normal(size=(10, 4)).astype(np.float32)
    pts[[2, 5], 1] = np.nan
    pts[7, 0] = np.inf
    msg = cv.build.pointcloud2(gm.xyz_to_structured(pts), Header())
    assert gm.pointcloud2_to_xyzi(msg).shape == (7, 4)
    kept = gm.pointcloud2_to_xyzi(msg, skip_nans=False)
    np.testing.assert_array_equal(kept, pts)


def test_pointcloud_round_trip_with_extra_fields(rng):
    pts = rng.normal(size=(500, 4)).astype(np.float32)
    ring = rng.integers(0, 128, 500).astype(np.uint16)
    t = rng.random(500).astype(np.float32)
    msg = cv.build.pointcloud2(gm.xyz_to_structured(pts, extra={"ring": ring, "time": t}), Header(frame_id="x"))
    assert [f.name for f in msg.fields] == ["x", "y", "z", "intensity", "ring", "time"]
    assert msg.point_step == 22 and msg.row_step == 22 * 500 and msg.header.frame_id == "x"
    back = gm.pointcloud2_to_array(msg).reshape(-1)
    np.testing.assert_array_equal(back["ring"], ring)
    np.testing.assert_array_equal(gm.pointcloud2_to_xyzi(msg), pts)


@pytest.mark.parametrize("break_it, detail, reason", [
    (lambda m: setattr(m, "data", bytes(len(m.data) - 4)), "expected row_step", "size_mismatch"),
    (lambda m: setattr(m, "fields", [f for f in m.fields if f.name != "y"]), "no 'y' field", "missing_field"),
    (lambda m: setattr(m.fields[0], "datatype", 42), "unknown datatype", "bad_field"),
    (lambda m: setattr(m, "row_step", 4), "row_step", "bad_layout"),
    (lambda m: setattr(m.fields[3], "offset", 20), "does not fit", "bad_field"),
])
def test_pointcloud_bad_messages_raise_with_reason(break_it, detail, reason):
    msg = cv.build.pointcloud2(gm.xyz_to_structured(np.zeros((4, 4), np.float32)), Header())
    break_it(msg)
    with pytest.raises(gm.ConversionError, match=detail) as exc:
        gm.pointcloud2_to_xyzi(msg)
    assert exc.value.reason == reason


def test_empty_cloud_decodes_to_zero_points():
    msg = PointCloud2(height=1, width=0, point_step=16, row_step=0)
    msg.fields = [PointField(name=n, offset=4 * i, datatype=F32, count=1) for i, n in enumerate("xyz")]
    assert gm.pointcloud2_to_xyzi(msg).shape == (0, 4)


@pytest.mark.parametrize("encoding, dtype, channels", [
    ("rgb8", np.uint8, 3), ("bgr8", np.uint8, 3), ("rgba8", np.uint8, 4), ("bgra8", np.uint8, 4),
    ("mono8", np.uint8, 1), ("mono16", np.uint16, 1), ("16UC1", np.uint16, 1), ("32FC1", np.float32, 1)])
def test_image_round_trip_every_encoding(rng, encoding, dtype, channels):
    shape = (5, 7) if channels == 1 else (5, 7, channels)
    arr = (rng.random(shape) * 1000).astype(dtype)
    msg = cv.build.image(arr, encoding, Header(frame_id="cam"))
    assert msg.step == 7 * channels * np.dtype(dtype).itemsize
    np.testing.assert_array_equal(gm.image_to_array(msg), arr)


def test_image_row_padding_and_big_endian(rng):
    arr = rng.integers(0, 65535, (4, 6)).astype(">u2")
    rows = np.zeros((4, 6 * 2 + 4), np.uint8)
    rows[:, :12] = arr.view(np.uint8).reshape(4, 12)
    msg = Image(height=4, width=6, encoding="mono16", is_bigendian=True, step=16)
    msg.data = rows.tobytes()
    out = gm.image_to_array(msg)
    np.testing.assert_array_equal(out, arr.astype(np.uint16))
    assert out.dtype == np.uint16 and out.dtype.byteorder in "=<|"


def test_image_to_rgb8_swaps_channels(rng):
    rgb = rng.integers(0, 255, (3, 4, 3)).astype(np.uint8)
    bgr_msg = cv.build.image(np.ascontiguousarray(rgb[:, :, ::-1]), "bgr8", Header())
    np.testing.assert_array_equal(gm.image_to_rgb8(bgr_msg), rgb)
    bgra = np.concatenate([rgb[:, :, ::-1], np.full((3, 4, 1), 255, np.uint8)], axis=2)
    np.testing.assert_array_equal(gm.image_to_rgb8(cv.build.image(bgra, "bgra8", Header())), rgb)


@pytest.mark.parametrize("mutate, detail, reason", [
    (lambda m: setattr(m, "encoding", "yuv422_weird"), "unsupported image encoding", "bad_encoding"),
    (lambda m: setattr(m, "data", bytes(10)), "expected step", "size_mismatch"),
    (lambda m: (setattr(m, "width", 0), setattr(m, "data", b"")), "empty", "zero_size"),
    (lambda m: setattr(m, "step", 3), "step 3 <", "bad_layout"),
])
def test_bad_images_raise_with_reason(mutate, detail, reason):
    msg = cv.build.image(np.zeros((4, 4, 3), np.uint8), "rgb8", Header())
    mutate(msg)
    with pytest.raises(gm.ConversionError, match=detail) as exc:
        gm.image_to_array(msg)
    assert exc.value.reason == reason


def test_detections3d_round_trip_and_quaternion(rng):
    yaw = np.array([0.0, np.pi / 2, -2.5])
    dets = gm.Detections3D(rng.normal(size=(3, 3)), np.abs(rng.normal(size=(3, 3))) + 1, yaw,
                           ["car", "pedestrian", "cyclist"], np.array([0.9, 0.5, 0.3]))
    header = Header(frame_id="lidar")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    msg = cv.build.detection3d_array(dets, header)
    q = msg.detections[1].bbox.center.orientation
    assert q.z == pytest.approx(np.sin(np.pi / 4)) and q.w == pytest.approx(np.cos(np.pi / 4))
    assert all(d.header.stamp.sec == 12 and d.header.stamp.nanosec == 345 for d in msg.detections)
    back = gm.detection3d_array_to_numpy(msg)
    np.testing.assert_allclose(back.centers, dets.centers)
    np.testing.assert_allclose(back.yaw, yaw)
    assert back.class_names == dets.class_names


def test_detections2d_round_trip(rng):
    boxes = np.array([[10, 20, 50, 80], [0, 0, 5, 5]], np.float64)
    dets = gm.Detections2D(boxes, ["car", "pedestrian"], np.array([0.8, 0.4]))
    back = gm.detection2d_array_to_numpy(cv.build.detection2d_array(dets, Header()))
    np.testing.assert_allclose(back.boxes_xyxy, boxes)
    np.testing.assert_allclose(back.scores, dets.scores)


class _Profile:  # the fields of glassbox.entropy.EntropyProfile
    model_name, estimator = "spi", "knn"
    estimator_params = {"k": "1", "sample_mode": "channels"}
    layer_names = ["stage1.0", "stage1.1", "stage2.0"]
    entropy_nats = np.array([10.0, 8.5, 7.0])
    delta_nats = np.array([0.0, -1.5, -1.5])
    samples_per_layer = np.array([32, 32, 64])
    sample_dim_per_layer = np.array([256, 256, 64])
    eloss_variance, eloss_direction, compute_time_ms = 0.0, -4.5, 1.25


def test_entropy_profile_round_trip():
    msg = cv.build.entropy_profile(_Profile, Header(frame_id="lidar"))
    assert isinstance(msg, EntropyProfile)
    back = gm.entropy_profile_from_msg(msg)
    assert back.layer_names == _Profile.layer_names and back.estimator_params == _Profile.estimator_params
    np.testing.assert_array_equal(back.entropy_nats, _Profile.entropy_nats)
    assert back.eloss_direction == -4.5


def test_fusion_weights_and_uncertainty_messages():
    msg = cv.build.fusion_weights(["rgb", "thermal"], np.array([[0.2, 0.8], [0.4, 0.6]]), Header(),
                                   degraded_sensors=["rgb"])
    np.testing.assert_allclose(msg.weights, [0.3, 0.7])
    assert msg.num_levels == 2 and list(msg.degraded_sensors) == ["rgb"]
    unc = gm.DetectionUncertainties(np.array([0.1, 0.6]), np.array([0.95, 0.6]), center_std=np.array([0.2, 0.5]))
    umsg = cv.build.detection_uncertainty_array(unc, Header())
    assert umsg.detections[1].center_std == 0.5 and np.isnan(umsg.detections[0].size_std)


# ------------------------------------------------------------------------------------ rosbags dataclasses
def test_same_converters_on_rosbags_dataclasses(rng, rosbags_typestore):
    """Builders with a rosbags factory produce dataclasses that serialise to CDR and decode back."""
    ts = rosbags_typestore
    rb = gm.bind(gm.RosbagsFactory(ts))
    header = rb.copy_header(Header(frame_id="lidar"))
    pts = rng.normal(size=(64, 4)).astype(np.float32)
    cloud = rb.pointcloud2(gm.xyz_to_structured(pts, extra={"ring": np.arange(64, dtype=np.uint16)}), header)
    raw = ts.serialize_cdr(cloud, "sensor_msgs/msg/PointCloud2")
    decoded = ts.deserialize_cdr(raw, "sensor_msgs/msg/PointCloud2")
    np.testing.assert_array_equal(gm.pointcloud2_to_xyzi(decoded), pts)

    img = rng.integers(0, 255, (6, 9, 3)).astype(np.uint8)
    imsg = ts.deserialize_cdr(ts.serialize_cdr(rb.image(img, "bgr8", header),
                                               "sensor_msgs/msg/Image"), "sensor_msgs/msg/Image")
    np.testing.assert_array_equal(gm.image_to_rgb8(imsg), img[:, :, ::-1])

    dets = gm.Detections3D(np.zeros((1, 3)), np.ones((1, 3)), np.array([0.3]), ["car"], np.array([0.7]))
    d3 = ts.deserialize_cdr(ts.serialize_cdr(rb.detection3d_array(dets, header),
                                             "vision_msgs/msg/Detection3DArray"), "vision_msgs/msg/Detection3DArray")
    assert gm.detection3d_array_to_numpy(d3).yaw[0] == pytest.approx(0.3)

    prof = ts.deserialize_cdr(ts.serialize_cdr(rb.entropy_profile(_Profile, header),
                                               "glassbox_msgs/msg/EntropyProfile"), "glassbox_msgs/msg/EntropyProfile")
    np.testing.assert_array_equal(gm.entropy_profile_from_msg(prof).delta_nats, _Profile.delta_nats)


def test_rosbags_and_rclpy_schemas_agree(rosbags_typestore):
    """The typestore's glassbox_msgs/vision_msgs definitions have the same fields as the built messages."""
    from vision_msgs.msg import Detection2D, Detection3D, LabelInfo, VisionClass, VisionInfo
    for cls, name in [(EntropyProfile, "glassbox_msgs/msg/EntropyProfile"),
                      (Detection3D, "vision_msgs/msg/Detection3D"), (Detection2D, "vision_msgs/msg/Detection2D"),
                      (LabelInfo, "vision_msgs/msg/LabelInfo"), (VisionClass, "vision_msgs/msg/VisionClass"),
                      (VisionInfo, "vision_msgs/msg/VisionInfo")]:
        rclpy_fields = list(cls.get_fields_and_field_types())
        rosbags_fields = [f[0] for f in rosbags_typestore.fielddefs[name][1]]
        assert rclpy_fields == rosbags_fields


def test_label_info_and_vision_info_are_vision_msgs_4_1():
    """Field names and types of vision_msgs 4.1 (ros2 branch) LabelInfo, VisionClass and VisionInfo."""
    from vision_msgs.msg import LabelInfo, VisionClass, VisionInfo
    assert LabelInfo.get_fields_and_field_types() == {"header": "std_msgs/Header",
                                                      "class_map": "sequence<vision_msgs/VisionClass>",
                                                      "threshold": "float"}
    assert VisionClass.get_fields_and_field_types() == {"class_id": "uint16", "class_name": "string"}
    assert VisionInfo.get_fields_and_field_types() == {"header": "std_msgs/Header", "method": "string",
                                                       "database_location": "string", "database_version": "int32"}


def test_camera_messages_on_rclpy(rng):
    """CompressedImage, CameraInfo and LabelInfo built as rclpy messages decode back."""
    from sensor_msgs.msg import CameraInfo, CompressedImage
    from vision_msgs.msg import LabelInfo

    from glassbox.calibration import pinhole
    bgr = rng.integers(0, 255, (6, 8, 3)).astype(np.uint8)
    comp = cv.build.compressed_image(bgr, "bgr8", Header(frame_id="cam"), kind="png")
    assert isinstance(comp, CompressedImage) and comp.format == "bgr8; png compressed bgr8"
    np.testing.assert_array_equal(gm.decode_color(comp), bgr[:, :, ::-1])
    k = np.array([[400.0, 0.0, 4.0], [0.0, 410.0, 3.0], [0.0, 0.0, 1.0]])
    info = cv.build.camera_info(pinhole(k, 8, 6), Header(frame_id="cam"))
    assert isinstance(info, CameraInfo) and list(info.d) == [0.0] * 5
    np.testing.assert_array_equal(gm.camera_model_from_info(info).k, k)
    labels = cv.build.label_info(["car", "pedestrian"], 0.25, Header())
    assert isinstance(labels, LabelInfo) and gm.label_info_to_names(labels) == {0: "car", 1: "pedestrian"}
