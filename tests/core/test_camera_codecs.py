"""Camera message codecs against closed forms: a known colour through every encoding a camera driver sends (raw
and compressed) gives the same RGB; CameraInfo ROI, binning and resizing move a projected point where the pinhole
model says; LabelInfo, pose covariances from spreads and the RViz markers. Messages are plain objects with the
ROS field names (the codecs read by name) or rosbags dataclasses (the codecs' builders)."""
from __future__ import annotations

from types import SimpleNamespace as Msg

import numpy as np
import pytest

from glassbox import msg as gm
from glassbox.calibration import pinhole

COLOR = (200, 80, 30)            # the known colour, RGB
GREY = 120


@pytest.fixture(scope="module")
def rb():
    from glassbox.bag.typestore import make_typestore
    return gm.bind(gm.RosbagsFactory(make_typestore()))


def raw(arr: np.ndarray, encoding: str, height: int, width: int) -> Msg:
    """A sensor_msgs/Image with ``arr``'s bytes, rows unpadded."""
    data = np.ascontiguousarray(arr).view(np.uint8).reshape(-1)
    return Msg(encoding=encoding, height=height, width=width, step=data.size // height, is_bigendian=False,
               data=data.tobytes())


def bt601(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    """ITU-R BT.601 video-range Y, U (Cb), V (Cr) of an 8-bit RGB colour."""
    r, g, b = (c / 255.0 for c in rgb)
    return (16 + 65.481 * r + 128.553 * g + 24.966 * b, 128 - 37.797 * r - 74.203 * g + 112.0 * b,
            128 + 112.0 * r - 93.786 * g - 18.214 * b)


def bayer(rgb: tuple[int, int, int], pattern: str, h: int = 8, w: int = 8) -> np.ndarray:
    """A mosaic of a uniform colour: ``pattern`` (e.g. "rggb") names the 2x2 cell's colours, row by row."""
    value = dict(zip("rgb", rgb))
    mosaic = np.zeros((h, w), np.uint8)
    for (dy, dx), c in zip(((0, 0), (0, 1), (1, 0), (1, 1)), pattern):
        mosaic[dy::2, dx::2] = value[c]
    return mosaic


def frame(encoding: str) -> tuple[Msg, tuple[int, int, int], int]:
    """A 6x8 image of the known colour (a grey for mono encodings) in ``encoding``, the RGB it shows, and the
    tolerance of the conversion."""
    h, w = 6, 8
    c = np.array(COLOR, np.uint8)
    if encoding in ("rgb8", "bgr8", "rgba8", "bgra8", "rgb16", "bgr16"):
        px = c if encoding.startswith("rgb") else c[::-1]
        if "a" in encoding:
            px = np.concatenate([px, np.array([255], np.uint8)])
        if encoding.endswith("16"):
            px = px.astype(np.uint16) * 257
        return raw(np.tile(px, (h, w, 1)), encoding, h, w), COLOR, 0
    if encoding in ("mono8", "mono16", "16UC1"):
        v = np.uint8(GREY) if encoding == "mono8" else np.uint16(GREY * 257)
        return raw(np.full((h, w), v), encoding, h, w), (GREY,) * 3, 0
    if encoding in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv"):
        y, u, v = np.round(bt601(COLOR)).astype(np.uint8)
        pair = [u, y, v, y] if encoding in ("yuv422", "uyvy") else [y, u, y, v]
        return raw(np.tile(np.array(pair, np.uint8), (h, w // 2)), encoding, h, w), COLOR, 2
    pattern = encoding.removeprefix("bayer_").removesuffix("8")
    return raw(bayer(COLOR, pattern, h, w), encoding, h, w), COLOR, 0


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "16UC1", "rgb16",
                                      "bgr16", "yuv422", "uyvy", "yuv422_yuy2", "yuyv", "bayer_rggb8",
                                      "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8"])
def test_known_colour_through_every_camera_encoding(encoding):
    msg, expected, tol = frame(encoding)
    rgb = gm.decode_color(msg)
    assert rgb.shape == (6, 8, 3) and rgb.dtype == np.uint8
    inner = rgb[2:-2, 2:-2].reshape(-1, 3).astype(int)     # demosaicing borders are extrapolated
    assert np.abs(inner - expected).max() <= tol, (encoding, inner[0])


def test_yuv422_byte_orders_are_not_interchangeable():
    uyvy, _, _ = frame("uyvy")
    as_yuyv = Msg(**{**vars(uyvy), "encoding": "yuyv"})
    assert np.abs(gm.decode_color(as_yuyv)[2, 2].astype(int) - COLOR).max() > 20


@pytest.mark.parametrize("encoding, reason, detail", [
    ("nv12", "bad_encoding", "'nv12'"), ("32FC1", "bad_encoding", "'32FC1'")])
def test_unsupported_camera_encoding_is_rejected_naming_it(encoding, reason, detail):
    msg = raw(np.zeros((4, 4), np.float32 if encoding == "32FC1" else np.uint8), encoding, 4, 4)
    with pytest.raises(gm.ConversionError, match=detail) as exc:
        gm.decode_color(msg)
    assert exc.value.reason == reason


def test_yuv422_with_odd_width_is_rejected():
    msg = raw(np.zeros((2, 6), np.uint8), "yuyv", 2, 3)
    with pytest.raises(gm.ConversionError, match="even width") as exc:
        gm.decode_color(msg)
    assert exc.value.reason == "bad_layout"


# ---------------------------------------------------------------------------------------- compressed images
@pytest.mark.parametrize("encoding, kind, tol", [("rgb8", "jpeg", 3), ("bgr8", "jpeg", 3), ("rgb8", "png", 0),
                                                 ("bgra8", "png", 0)])
def test_known_colour_through_compressed_images(rb, encoding, kind, tol):
    c = np.array(COLOR, np.uint8)
    px = c if encoding == "rgb8" else np.concatenate([c[::-1], np.array([255], np.uint8)])[: len(encoding) - 1]
    arr = np.tile(px, (16, 16, 1))
    msg = rb.compressed_image(arr, encoding, rb.header(7, "cam"), kind=kind)
    assert msg.format.startswith(f"{encoding}; {kind} compressed bgr")
    assert np.abs(gm.decode_color(msg).reshape(-1, 3).astype(int) - COLOR).max() <= tol
    assert gm.color_order(msg) == ("rgb8" if encoding.startswith("rgb") else "bgr8")


def test_compressed_formats_of_other_publishers():
    import cv2
    rgb = np.tile(np.array(COLOR, np.uint8), (8, 8, 1))
    png = cv2.imencode(".png", rgb[:, :, ::-1])[1].tobytes()          # what OpenCV writes is BGR
    plain = Msg(format="png", data=png)                                 # an old publisher: no layout given
    np.testing.assert_array_equal(gm.decode_color(plain)[0, 0], COLOR)
    rgb_coded = Msg(format="rgb8; png compressed rgb8", data=cv2.imencode(".png", rgb)[1].tobytes())
    np.testing.assert_array_equal(gm.decode_color(rgb_coded)[0, 0], COLOR)


def test_compressed_16bit_thermal_and_bayer_keep_their_values(rb):
    counts = (np.arange(48, dtype=np.uint16).reshape(6, 8) * 1000 + 2000)
    msg = rb.compressed_image(counts, "mono16", rb.header(1, "thermal"), kind="png")
    assert msg.format == "mono16; png compressed"
    out = gm.decode_thermal(msg)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, counts)
    mosaic = rb.compressed_image(bayer(COLOR, "grbg"), "bayer_grbg8", rb.header(1, "cam"), kind="png")
    assert np.abs(gm.decode_color(mosaic)[2:-2, 2:-2].astype(int) - COLOR).max() == 0


@pytest.mark.parametrize("fmt, data, reason", [
    ("rgb8; jpeg compressed bgr8", b"not a jpeg", "undecodable"),
    ("rgb8; jpeg compressed bgr8", b"", "zero_size"),
    ("tiff", b"\0\1", "bad_encoding"),
    ("16UC1; compressedDepth png", b"\0" * 20, "bad_encoding")])
def test_bad_compressed_images_are_rejected(fmt, data, reason):
    with pytest.raises(gm.ConversionError) as exc:
        gm.decode_color(Msg(format=fmt, data=data))
    assert exc.value.reason == reason


def test_compressed_colour_is_not_thermal(rb):
    msg = rb.compressed_image(np.zeros((8, 8, 3), np.uint8), "bgr8", rb.header(1, "thermal"), kind="png")
    with pytest.raises(gm.ConversionError, match="thermal encoding 'bgr8'") as exc:
        gm.decode_thermal(msg)
    assert exc.value.reason == "bad_encoding"


# ------------------------------------------------------------------------------------------------ camera info
K = np.array([[500.0, 0.0, 320.0], [0.0, 480.0, 256.0], [0.0, 0.0, 1.0]])
POINT = np.array([0.4, -0.3, 5.0])          # a 3D point in the optical frame, m


def project(k: np.ndarray, p: np.ndarray = POINT) -> np.ndarray:
    uvw = k @ p
    return uvw[:2] / uvw[2]


def test_camera_info_round_trip_and_resize(rb):
    info = rb.camera_info(pinhole(K, 640, 512), rb.header(3, "camera_optical_frame"))
    model = gm.camera_model_from_info(info)
    assert (model.width, model.height, model.calibrated) == (640, 512, True)
    np.testing.assert_allclose(model.p[:, :3], K)
    half = model.scaled(320, 256)
    np.testing.assert_allclose(project(half.k), project(K) / 2)          # pixel coordinates halve
    np.testing.assert_allclose(project(half.p[:, :3]), project(K) / 2)
    assert gm.camera_model_from_info(rb.camera_info(half, info.header)).width == 320


def test_camera_info_roi_and_binning_describe_the_published_image(rb):
    info = rb.camera_info(pinhole(K, 640, 512), rb.header(3, "cam"))
    info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height = 100, 50, 320, 256
    info.binning_x = info.binning_y = 2
    model = gm.camera_model_from_info(info)
    assert (model.width, model.height) == (160, 128)
    u_full = project(K)
    np.testing.assert_allclose(project(model.k), (u_full - [100, 50]) / 2)


def test_uncalibrated_and_malformed_camera_info(rb):
    zeros = gm.camera_model_from_info(rb.camera_info(pinhole(np.zeros((3, 3)), 64, 48), rb.header(0, "c")))
    assert not zeros.calibrated
    empty = rb.camera_info(pinhole(K, 640, 512), rb.header(0, "c"))
    empty.width = 0
    with pytest.raises(gm.ConversionError) as exc:
        gm.camera_model_from_info(empty)
    assert exc.value.reason == "zero_size"
    nan = rb.camera_info(pinhole(K, 640, 512), rb.header(0, "c"))
    nan.k[0] = np.nan
    with pytest.raises(gm.ConversionError) as exc:
        gm.camera_model_from_info(nan)
    assert exc.value.reason == "non_finite"


def test_camera_info_topic_is_the_image_topics_sibling():
    assert gm.camera_info_topic("/cam/front/image_raw") == "/cam/front/camera_info"
    assert gm.camera_info_topic("/glassbox/fusion/thermal/image") == "/glassbox/fusion/thermal/camera_info"


# ------------------------------------------------------------------------------- detections, labels, markers
def test_pose_covariance_from_spreads():
    cov = gm.pose_covariance_from_spreads(np.array([0.3, np.nan]), np.array([0.1, 0.2])).reshape(-1, 6, 6)
    assert np.trace(cov[0, :3, :3]) == pytest.approx(0.09)            # trace = (RMS centre spread)^2
    assert cov[0, 0, 0] == cov[0, 1, 1] == cov[0, 2, 2] == pytest.approx(0.03)
    assert cov[0, 5, 5] == pytest.approx(0.01) and cov[0, 3, 3] == cov[0, 4, 4] == 0.0
    assert np.count_nonzero(cov[0] - np.diag(np.diag(cov[0]))) == 0
    assert not cov[1, :3, :3].any() and cov[1, 5, 5] == pytest.approx(0.04)   # NaN spread: not estimated


def test_detections_carry_their_covariance_and_markers_label_them(rb):
    dets = gm.Detections3D(np.array([[5.0, 1.0, -0.5], [9.0, -2.0, 0.0]]), np.array([[4.0, 1.8, 1.5]] * 2),
                           np.array([0.2, -1.0]), ["car", "pedestrian"], np.array([0.9, 0.45]),
                           covariance=gm.pose_covariance_from_spreads(np.array([0.3, 0.6]), np.array([0.1, 0.05])))
    header = rb.header(11, "lidar")
    back = gm.detection3d_array_to_numpy(rb.detection3d_array(dets, header))
    np.testing.assert_allclose(back.covariance, dets.covariance)
    markers = rb.box_markers(dets, header).markers
    assert markers[0].action == gm.detections.DELETEALL and len(markers) == 1 + 2 * len(dets)
    texts = [m for m in markers if m.type == gm.detections.TEXT_VIEW_FACING]
    assert [m.text for m in texts] == ["car 0.90", "pedestrian 0.45"]
    assert [m.ns for m in markers[1:]] == ["car", "car", "pedestrian", "pedestrian"]
    assert len({(m.ns, m.id) for m in markers[1:]}) == 4                      # no two markers share ns + id
    assert texts[0].pose.position.z > dets.centers[0, 2] + dets.sizes[0, 2] / 2   # above its box


def test_label_info_maps_ids_to_names(rb):
    msg = rb.label_info(("car", "pedestrian", "cyclist"), 0.3, rb.header(0, ""))
    assert gm.label_info_to_names(msg) == {0: "car", 1: "pedestrian", 2: "cyclist"}
    assert msg.threshold == pytest.approx(0.3)
