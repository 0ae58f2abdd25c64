"""Message-agnostic codecs between ROS 2 messages and numpy.

The functions here read and write messages by *field name only*, so the same code serves rclpy messages (the
nodes, through ``glassbox_ros.converters``) and rosbags dataclasses (bag writing and replay, through
``glassbox.bag``). Messages are built through a :class:`MessageFactory`, which knows how its message flavour
stores sequences (rclpy: ``array.array``; rosbags: numpy arrays). This module imports no ROS package.

Hot paths are views and block copies: a PointCloud2 is decoded with a numpy structured dtype built from its
``fields`` (any order, padding, extra fields, either endianness, row padding), never per point.
"""
from __future__ import annotations

import array
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


class ConversionError(ValueError):
    """A message cannot be converted; the text says why (and names the offending field)."""


# ----------------------------------------------------------------------------------------------- factories
class MessageFactory(Protocol):
    """Builds messages of one flavour (rclpy or rosbags) from complete field values."""

    def make(self, typename: str, **fields: Any) -> Any:
        """Instantiate ``typename`` (e.g. ``"sensor_msgs/msg/PointCloud2"``) with every field given."""

    def seq(self, values: np.ndarray, kind: str) -> Any:
        """A dynamic primitive sequence of ``kind`` in {"u8", "u32", "f32", "f64"} from a numpy array."""


_ARRAY_CODES = {"u8": ("B", np.uint8), "u32": ("I", np.uint32), "f32": ("f", np.float32), "f64": ("d", np.float64)}


class ArrayFactoryMixin:
    """``seq`` for message flavours that store primitive sequences as ``array.array`` (rclpy)."""

    def seq(self, values: np.ndarray, kind: str) -> Any:
        code, dtype = _ARRAY_CODES[kind]
        out = array.array(code)
        out.frombytes(np.ascontiguousarray(values, dtype=dtype).reshape(-1).view(np.uint8).data)
        return out


class NumpyFactoryMixin:
    """``seq`` for message flavours that store primitive sequences as numpy arrays (rosbags)."""

    def seq(self, values: np.ndarray, kind: str) -> Any:
        return np.ascontiguousarray(values, dtype=_ARRAY_CODES[kind][1])


# ------------------------------------------------------------------------------------------------- headers
def stamp_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def make_time(factory: MessageFactory, stamp_ns: int) -> Any:
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return factory.make("builtin_interfaces/msg/Time", sec=sec, nanosec=nanosec)


def make_header(factory: MessageFactory, stamp_ns: int, frame_id: str) -> Any:
    return factory.make("std_msgs/msg/Header", stamp=make_time(factory, stamp_ns), frame_id=str(frame_id))


def copy_header(factory: MessageFactory, header: Any) -> Any:
    """A fresh header with the stamp and frame of ``header`` (which may be of another flavour)."""
    return make_header(factory, stamp_to_ns(header.stamp), header.frame_id)


# --------------------------------------------------------------------------------------------- PointCloud2
# sensor_msgs/PointField datatype codes -> numpy base types
POINTFIELD_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
_NUMPY_TO_POINTFIELD = {np.dtype(v).str[1:]: k for k, v in POINTFIELD_DTYPES.items()}


def pointcloud2_dtype(fields: Sequence[Any], point_step: int, is_bigendian: bool) -> np.dtype:
    """Structured dtype of one point, from the message's PointField list (name, offset, datatype, count)."""
    endian = ">" if is_bigendian else "<"
    names, formats, offsets = [], [], []
    for f in fields:
        if f.datatype not in POINTFIELD_DTYPES:
            raise ConversionError(f"PointCloud2 field '{f.name}' has unknown datatype {f.datatype}")
        if f.name in names:
            raise ConversionError(f"PointCloud2 field '{f.name}' appears twice")
        base = endian + POINTFIELD_DTYPES[f.datatype]
        count = int(f.count) if f.count else 1
        size = np.dtype(base).itemsize * count
        if f.offset + size > point_step:
            raise ConversionError(f"PointCloud2 field '{f.name}' (offset {f.offset}, {size} bytes) does not fit in "
                                  f"point_step {point_step}")
        names.append(f.name)
        formats.append(base if count == 1 else (base, (count,)))
        offsets.append(int(f.offset))
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": int(point_step)})


def pointcloud2_to_array(msg: Any) -> np.ndarray:
    """Decode a PointCloud2 into a structured array of shape (height, width), a view on the message data.

    Works for organised (height > 1) and unorganised clouds, row padding (row_step > width * point_step),
    padding inside a point, and big-endian data. Raises :class:`ConversionError` with the reason when the
    message is inconsistent.
    """
    height, width, point_step, row_step = int(msg.height), int(msg.width), int(msg.point_step), int(msg.row_step)
    if point_step <= 0:
        raise ConversionError(f"PointCloud2 point_step must be positive, got {point_step}")
    if row_step < width * point_step:
        raise ConversionError(f"PointCloud2 row_step {row_step} < width {width} * point_step {point_step}")
    dtype = pointcloud2_dtype(msg.fields, point_step, bool(msg.is_bigendian))
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size != row_step * height:
        raise ConversionError(f"PointCloud2 data has {data.size} bytes, expected row_step {row_step} * height "
                              f"{height} = {row_step * height}")
    if height * width == 0:
        return np.empty((height, width), dtype=dtype)
    return np.ndarray(shape=(height, width), dtype=dtype, buffer=data, strides=(row_step, point_step))


def pointcloud2_to_xyz(msg: Any, *, fields: Sequence[str] = ("x", "y", "z"), skip_nans: bool = True,
                       dtype: Any = np.float32) -> np.ndarray:
    """Decode the named fields of a PointCloud2 into a float array (N, len(fields)).

    Missing ``x``/``y``/``z`` raise :class:`ConversionError`; any other missing field (e.g. intensity) is filled
    with zeros. With ``skip_nans`` (default) points whose x, y or z is not finite are dropped; otherwise every
    point is kept in row-major order, so an organised cloud maps back to its (height, width) grid.
    When the message holds exactly these float32 fields back to back, the result shares the message's memory.
    """
    cloud = pointcloud2_to_array(msg)
    names = cloud.dtype.names or ()
    for axis in ("x", "y", "z"):
        if axis in fields and axis not in names:
            raise ConversionError(f"PointCloud2 has no '{axis}' field (fields: {', '.join(names) or 'none'})")
    n = cloud.size
    flat = cloud.reshape(-1)
    packed = _packed_view(flat, fields)
    if packed is not None and np.dtype(dtype) == packed.dtype:
        out = np.ascontiguousarray(packed)          # the common layout: one block copy
    else:
        out = np.empty((n, len(fields)), dtype=dtype)
        for j, name in enumerate(fields):
            if name in names:
                col = flat[name]
                out[:, j] = col if col.ndim == 1 else col[:, 0]
            else:
                out[:, j] = 0
    if skip_nans and n:
        xyz_cols = [fields.index(a) for a in ("x", "y", "z") if a in fields]
        # One BLAS dot product is finite when every value is (and huge values merely take the exact path),
        # so the per-point mask is only built for clouds that do hold NaN/inf.
        flat_out = out.reshape(-1)
        if not np.isfinite(np.dot(flat_out, flat_out)):
            keep = np.isfinite(out[:, xyz_cols]).all(axis=1)
            out = out[keep]
    return out


def _packed_view(flat: np.ndarray, fields: Sequence[str]) -> np.ndarray | None:
    """(N, k) float32 array when ``fields`` are consecutive native float32 scalars in a 1-D cloud, else None."""
    names = flat.dtype.names or ()
    if not all(f in names for f in fields) or flat.ndim != 1 or flat.strides[0] != flat.dtype.itemsize:
        return None
    first = flat.dtype.fields[fields[0]][1]
    for j, name in enumerate(fields):
        sub, offset = flat.dtype.fields[name][:2]
        if sub != np.dtype("=f4") or offset != first + 4 * j:
            return None
    base = flat.view(np.uint8).reshape(-1)
    if flat.dtype.itemsize == 4 * len(fields):
        return np.ndarray(shape=(flat.size, len(fields)), dtype=np.float32, buffer=base)
    # Copy each point's run of fields as one opaque block: an order of magnitude faster than a strided
    # float32 gather, and as fast as memcpy.
    blocks = np.ndarray(shape=(flat.size,), dtype=np.dtype((np.void, 4 * len(fields))), buffer=base, offset=first,
                        strides=(flat.dtype.itemsize,))
    return np.ascontiguousarray(blocks).view(np.float32).reshape(flat.size, len(fields))


def pointcloud2_to_xyzi(msg: Any, *, skip_nans: bool = True, intensity_field: str = "intensity") -> np.ndarray:
    """(N, 4) float32 x, y, z, intensity (zeros when the cloud has no intensity field)."""
    return pointcloud2_to_xyz(msg, fields=("x", "y", "z", intensity_field), skip_nans=skip_nans)


def pointcloud2_fields_from_dtype(dtype: np.dtype) -> list[tuple[str, int, int, int]]:
    """PointField tuples (name, offset, datatype, count) describing a structured dtype."""
    out = []
    for name in dtype.names:
        sub, offset = dtype.fields[name][:2]
        base, shape = (sub.subdtype if sub.subdtype else (sub, ()))
        key = base.str[1:]
        if key not in _NUMPY_TO_POINTFIELD:
            raise ConversionError(f"field '{name}' has dtype {base}, which PointCloud2 cannot carry")
        out.append((name, int(offset), _NUMPY_TO_POINTFIELD[key], int(np.prod(shape)) if shape else 1))
    return out


def xyz_to_structured(points: np.ndarray, names: Sequence[str] = ("x", "y", "z", "intensity"),
                      extra: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """Pack a float array (N, len(names)) and optional extra per-point columns into a structured array."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != len(names):
        raise ConversionError(f"points must have shape (N, {len(names)}) for fields {list(names)}, got {points.shape}")
    extra = dict(extra or {})
    descr = [(n, "<f4") for n in names] + [(k, np.asarray(v).dtype.newbyteorder("<")) for k, v in extra.items()]
    out = np.empty(points.shape[0], dtype=descr)
    for j, n in enumerate(names):
        out[n] = points[:, j]
    for k, v in extra.items():
        if len(v) != points.shape[0]:
            raise ConversionError(f"extra field '{k}' has {len(v)} values for {points.shape[0]} points")
        out[k] = v
    return out


def make_pointcloud2(factory: MessageFactory, cloud: np.ndarray, header: Any) -> Any:
    """Build a PointCloud2 from a structured array of shape (N,) (unorganised) or (H, W) (organised)."""
    cloud = np.asarray(cloud)
    if cloud.dtype.names is None:
        raise ConversionError("make_pointcloud2 needs a structured array (see xyz_to_structured)")
    if cloud.ndim == 1:
        cloud = cloud.reshape(1, -1)
    if cloud.ndim != 2:
        raise ConversionError(f"cloud must be 1-D or 2-D, got shape {cloud.shape}")
    big = cloud.dtype.fields[cloud.dtype.names[0]][0].byteorder == ">"
    cloud = np.ascontiguousarray(cloud)
    fields = [factory.make("sensor_msgs/msg/PointField", name=n, offset=o, datatype=d, count=c)
              for n, o, d, c in pointcloud2_fields_from_dtype(cloud.dtype)]
    height, width = cloud.shape
    step = cloud.dtype.itemsize
    return factory.make("sensor_msgs/msg/PointCloud2", header=header, height=height, width=width, fields=fields,
                        is_bigendian=big, point_step=step, row_step=step * width,
                        data=factory.seq(cloud.view(np.uint8).reshape(-1), "u8"), is_dense=False)


# --------------------------------------------------------------------------------------------------- Image
# encoding -> (numpy base type, channels)
IMAGE_ENCODINGS: dict[str, tuple[str, int]] = {
    "rgb8": ("u1", 3), "bgr8": ("u1", 3), "rgba8": ("u1", 4), "bgra8": ("u1", 4),
    "mono8": ("u1", 1), "mono16": ("u2", 1), "8UC1": ("u1", 1), "8UC3": ("u1", 3), "8UC4": ("u1", 4),
    "16UC1": ("u2", 1), "16SC1": ("i2", 1), "32SC1": ("i4", 1), "32FC1": ("f4", 1), "32FC3": ("f4", 3),
    "64FC1": ("f8", 1), "rgb16": ("u2", 3), "bgr16": ("u2", 3),
}


def image_to_array(msg: Any, *, copy: bool = False) -> np.ndarray:
    """Decode an Image into (H, W) for one channel or (H, W, C), in the message's own channel order.

    Handles row padding (step > width * pixel size) and big-endian data (converted to native order).
    Raises :class:`ConversionError` for unknown encodings, zero-size images and size mismatches.
    """
    enc = str(msg.encoding)
    if enc not in IMAGE_ENCODINGS:
        raise ConversionError(f"unsupported image encoding '{enc}' (supported: {', '.join(IMAGE_ENCODINGS)})")
    base, channels = IMAGE_ENCODINGS[enc]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise ConversionError(f"image is empty ({width}x{height})")
    dtype = np.dtype((">" if msg.is_bigendian else "<") + base)
    pixel = dtype.itemsize * channels
    if step < width * pixel:
        raise ConversionError(f"image step {step} < width {width} * {pixel} bytes per pixel for '{enc}'")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size != step * height:
        raise ConversionError(f"image data has {data.size} bytes, expected step {step} * height {height} = "
                              f"{step * height}")
    arr = np.ndarray(shape=(height, width, channels), dtype=dtype, buffer=data,
                     strides=(step, pixel, dtype.itemsize))
    if dtype.byteorder == ">" and dtype.itemsize > 1:
        arr = arr.astype(dtype.newbyteorder("="))
    elif copy:
        arr = arr.copy()
    return arr[:, :, 0] if channels == 1 else arr


def image_to_rgb8(msg: Any) -> np.ndarray:
    """Decode a colour or mono 8-bit image to contiguous RGB (H, W, 3) uint8."""
    arr = image_to_array(msg)
    enc = str(msg.encoding)
    if enc in ("rgb8", "8UC3"):
        return np.ascontiguousarray(arr)
    if enc == "bgr8":
        return np.ascontiguousarray(arr[:, :, ::-1])
    if enc == "rgba8":
        return np.ascontiguousarray(arr[:, :, :3])
    if enc == "bgra8":
        return np.ascontiguousarray(arr[:, :, 2::-1])
    if enc in ("mono8", "8UC1"):
        return np.repeat(arr[:, :, None], 3, axis=2)
    raise ConversionError(f"cannot convert encoding '{enc}' to rgb8")


def make_image(factory: MessageFactory, arr: np.ndarray, encoding: str, header: Any) -> Any:
    """Build an Image from (H, W) or (H, W, C) whose dtype and channel count match ``encoding``."""
    if encoding not in IMAGE_ENCODINGS:
        raise ConversionError(f"unsupported image encoding '{encoding}'")
    base, channels = IMAGE_ENCODINGS[encoding]
    arr = np.asarray(arr)
    shape_c = 1 if arr.ndim == 2 else (arr.shape[2] if arr.ndim == 3 else -1)
    if shape_c != channels or arr.dtype.str[1:] != base:
        raise ConversionError(f"array {arr.shape} {arr.dtype} does not match encoding '{encoding}' "
                              f"({channels} channel(s) of {np.dtype(base)})")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ConversionError(f"image is empty ({arr.shape[1]}x{arr.shape[0]})")
    arr = np.ascontiguousarray(arr, dtype=np.dtype("<" + base))
    height, width = arr.shape[:2]
    return factory.make("sensor_msgs/msg/Image", header=header, height=height, width=width, encoding=encoding,
                        is_bigendian=False, step=width * channels * arr.dtype.itemsize,
                        data=factory.seq(arr.view(np.uint8).reshape(-1), "u8"))


# ---------------------------------------------------------------------------------------------- geometry
def yaw_to_quaternion(yaw: np.ndarray) -> np.ndarray:
    """(N,) yaw about +z -> (N, 4) quaternions x, y, z, w."""
    yaw = np.asarray(yaw, dtype=np.float64)
    q = np.zeros(yaw.shape + (4,))
    q[..., 2] = np.sin(yaw / 2.0)
    q[..., 3] = np.cos(yaw / 2.0)
    return q


def quaternion_to_yaw(x: float, y: float, z: float, w: float) -> float:
    """Yaw (rotation about +z) of a quaternion."""
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def _pose(factory: MessageFactory, xyz: Sequence[float], quat: Sequence[float]) -> Any:
    return factory.make(
        "geometry_msgs/msg/Pose",
        position=factory.make("geometry_msgs/msg/Point", x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2])),
        orientation=factory.make("geometry_msgs/msg/Quaternion", x=float(quat[0]), y=float(quat[1]),
                                 z=float(quat[2]), w=float(quat[3])))


def _hypotheses(factory: MessageFactory, class_names: Sequence[str], scores: np.ndarray, pose: Any) -> list:
    """One ObjectHypothesisWithPose per (class, score) pair."""
    return [factory.make("vision_msgs/msg/ObjectHypothesisWithPose",
                         hypothesis=factory.make("vision_msgs/msg/ObjectHypothesis", class_id=str(c), score=float(s)),
                         pose=factory.make("geometry_msgs/msg/PoseWithCovariance", pose=pose,
                                           covariance=np.zeros(36, dtype=np.float64)))
            for c, s in zip(class_names, scores)]


# ------------------------------------------------------------------------------------------ detections 3D
@dataclass
class Detections3D:
    """3D boxes in one frame: centres (N,3) m, sizes (N,3) length/width/height m, yaw (N,) rad, labels, scores."""

    centers: np.ndarray
    sizes: np.ndarray
    yaw: np.ndarray
    class_names: list[str]
    scores: np.ndarray
    ids: list[str] | None = None

    def __len__(self) -> int:
        return int(len(self.scores))


def make_detection3d_array(factory: MessageFactory, dets: Detections3D, header: Any) -> Any:
    """vision_msgs/Detection3DArray: one Detection3D per box, header copied onto each detection."""
    quats = yaw_to_quaternion(dets.yaw)
    ids = dets.ids if dets.ids is not None else [str(i) for i in range(len(dets))]
    out = []
    for i in range(len(dets)):
        pose = _pose(factory, dets.centers[i], quats[i])
        bbox = factory.make("vision_msgs/msg/BoundingBox3D", center=pose,
                            size=factory.make("geometry_msgs/msg/Vector3", x=float(dets.sizes[i, 0]),
                                              y=float(dets.sizes[i, 1]), z=float(dets.sizes[i, 2])))
        out.append(factory.make("vision_msgs/msg/Detection3D", header=header,
                                results=_hypotheses(factory, [dets.class_names[i]], [dets.scores[i]], pose),
                                bbox=bbox, id=str(ids[i])))
    return factory.make("vision_msgs/msg/Detection3DArray", header=header, detections=out)


def detection3d_array_to_numpy(msg: Any) -> Detections3D:
    """Inverse of :func:`make_detection3d_array` (top hypothesis per detection)."""
    n = len(msg.detections)
    centers, sizes, yaw, scores = np.zeros((n, 3)), np.zeros((n, 3)), np.zeros(n), np.zeros(n)
    names, ids = [], []
    for i, d in enumerate(msg.detections):
        c, o, s = d.bbox.center.position, d.bbox.center.orientation, d.bbox.size
        centers[i] = (c.x, c.y, c.z)
        sizes[i] = (s.x, s.y, s.z)
        yaw[i] = quaternion_to_yaw(o.x, o.y, o.z, o.w)
        best = max(d.results, key=lambda r: r.hypothesis.score) if d.results else None
        names.append(best.hypothesis.class_id if best else "")
        scores[i] = best.hypothesis.score if best else 0.0
        ids.append(d.id)
    return Detections3D(centers, sizes, yaw, names, scores, ids)


# ------------------------------------------------------------------------------------------ detections 2D
@dataclass
class Detections2D:
    """2D boxes in one image: (N, 4) pixel x1, y1, x2, y2, class names and scores."""

    boxes_xyxy: np.ndarray
    class_names: list[str]
    scores: np.ndarray
    ids: list[str] | None = None

    def __len__(self) -> int:
        return int(len(self.scores))


def make_detection2d_array(factory: MessageFactory, dets: Detections2D, header: Any) -> Any:
    """vision_msgs/Detection2DArray (4.x schema: centre as Pose2D with Point2D position)."""
    b = np.asarray(dets.boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    ids = dets.ids if dets.ids is not None else [str(i) for i in range(len(dets))]
    identity = (0.0, 0.0, 0.0, 1.0)
    out = []
    for i in range(len(dets)):
        cx, cy = (b[i, 0] + b[i, 2]) / 2.0, (b[i, 1] + b[i, 3]) / 2.0
        center = factory.make("vision_msgs/msg/Pose2D",
                              position=factory.make("vision_msgs/msg/Point2D", x=float(cx), y=float(cy)), theta=0.0)
        bbox = factory.make("vision_msgs/msg/BoundingBox2D", center=center, size_x=float(b[i, 2] - b[i, 0]),
                            size_y=float(b[i, 3] - b[i, 1]))
        pose = _pose(factory, (cx, cy, 0.0), identity)
        out.append(factory.make("vision_msgs/msg/Detection2D", header=header,
                                results=_hypotheses(factory, [dets.class_names[i]], [dets.scores[i]], pose),
                                bbox=bbox, id=str(ids[i])))
    return factory.make("vision_msgs/msg/Detection2DArray", header=header, detections=out)


def detection2d_array_to_numpy(msg: Any) -> Detections2D:
    """Inverse of :func:`make_detection2d_array` (top hypothesis per detection)."""
    n = len(msg.detections)
    boxes, scores, names, ids = np.zeros((n, 4)), np.zeros(n), [], []
    for i, d in enumerate(msg.detections):
        cx, cy = d.bbox.center.position.x, d.bbox.center.position.y
        boxes[i] = (cx - d.bbox.size_x / 2, cy - d.bbox.size_y / 2, cx + d.bbox.size_x / 2, cy + d.bbox.size_y / 2)
        best = max(d.results, key=lambda r: r.hypothesis.score) if d.results else None
        names.append(best.hypothesis.class_id if best else "")
        scores[i] = best.hypothesis.score if best else 0.0
        ids.append(d.id)
    return Detections2D(boxes, names, scores, ids)


# ----------------------------------------------------------------------------------- glassbox_msgs builders
def make_entropy_profile(factory: MessageFactory, profile: Any, header: Any) -> Any:
    """glassbox_msgs/EntropyProfile from an object with the fields of ``glassbox.entropy.EntropyProfile``."""
    params = dict(profile.estimator_params)
    return factory.make(
        "glassbox_msgs/msg/EntropyProfile", header=header, model_name=str(profile.model_name),
        estimator=str(profile.estimator), estimator_param_names=[str(k) for k in params],
        estimator_param_values=[str(v) for v in params.values()],
        layer_names=[str(n) for n in profile.layer_names],
        entropy_nats=factory.seq(np.asarray(profile.entropy_nats, np.float64), "f64"),
        delta_nats=factory.seq(np.asarray(profile.delta_nats, np.float64), "f64"),
        samples_per_layer=factory.seq(np.asarray(profile.samples_per_layer, np.uint32), "u32"),
        sample_dim_per_layer=factory.seq(np.asarray(profile.sample_dim_per_layer, np.uint32), "u32"),
        eloss_variance=float(profile.eloss_variance), eloss_direction=float(profile.eloss_direction),
        compute_time_ms=float(profile.compute_time_ms))


@dataclass
class EntropyProfileFields:
    """Plain-python content of an EntropyProfile message (see glassbox_msgs/msg/EntropyProfile.msg)."""

    stamp_ns: int
    frame_id: str
    model_name: str
    estimator: str
    estimator_params: dict[str, str]
    layer_names: list[str]
    entropy_nats: np.ndarray
    delta_nats: np.ndarray
    samples_per_layer: np.ndarray
    sample_dim_per_layer: np.ndarray
    eloss_variance: float
    eloss_direction: float
    compute_time_ms: float


def entropy_profile_from_msg(msg: Any) -> EntropyProfileFields:
    """Decode an EntropyProfile message, checking that its per-layer arrays agree in length."""
    layers = list(msg.layer_names)
    arrays = {name: np.asarray(getattr(msg, name), dtype=np.float64)
              for name in ("entropy_nats", "delta_nats", "samples_per_layer", "sample_dim_per_layer")}
    for name, arr in arrays.items():
        if name in ("entropy_nats", "delta_nats") and arr.size != len(layers):
            raise ConversionError(f"EntropyProfile '{name}' has {arr.size} values for {len(layers)} layers")
    if len(msg.estimator_param_names) != len(msg.estimator_param_values):
        raise ConversionError("EntropyProfile estimator_param_names and estimator_param_values differ in length")
    return EntropyProfileFields(
        stamp_ns=stamp_to_ns(msg.header.stamp), frame_id=msg.header.frame_id, model_name=msg.model_name,
        estimator=msg.estimator,
        estimator_params=dict(zip(msg.estimator_param_names, msg.estimator_param_values)),
        layer_names=layers, entropy_nats=arrays["entropy_nats"], delta_nats=arrays["delta_nats"],
        samples_per_layer=arrays["samples_per_layer"].astype(np.uint32),
        sample_dim_per_layer=arrays["sample_dim_per_layer"].astype(np.uint32),
        eloss_variance=float(msg.eloss_variance), eloss_direction=float(msg.eloss_direction),
        compute_time_ms=float(msg.compute_time_ms))


@dataclass
class DetectionUncertainties:
    """Per-detection uncertainty, index-aligned with a detection array (NaN where not computed)."""

    score_entropy_nats: np.ndarray
    top_score: np.ndarray
    center_std: np.ndarray | None = None
    size_std: np.ndarray | None = None
    yaw_std_rad: np.ndarray | None = None
    ids: list[str] | None = None


def make_detection_uncertainty_array(factory: MessageFactory, unc: DetectionUncertainties, header: Any) -> Any:
    n = len(unc.score_entropy_nats)
    nan = np.full(n, np.nan)
    cs = nan if unc.center_std is None else unc.center_std
    ss = nan if unc.size_std is None else unc.size_std
    ys = nan if unc.yaw_std_rad is None else unc.yaw_std_rad
    ids = unc.ids if unc.ids is not None else [str(i) for i in range(n)]
    items = [factory.make("glassbox_msgs/msg/DetectionUncertainty", detection_id=str(ids[i]),
                          score_entropy_nats=float(unc.score_entropy_nats[i]), top_score=float(unc.top_score[i]),
                          center_std=float(cs[i]), size_std=float(ss[i]), yaw_std_rad=float(ys[i]))
             for i in range(n)]
    return factory.make("glassbox_msgs/msg/DetectionUncertaintyArray", header=header, detections=items)


def make_fusion_weights(factory: MessageFactory, sensor_names: Sequence[str], level_weights: np.ndarray,
                        header: Any, sensor_age_s: Sequence[float] | None = None,
                        degraded_sensors: Sequence[str] = ()) -> Any:
    """glassbox_msgs/FusionWeights from per-level weights (levels, sensors)."""
    lw = np.asarray(level_weights, dtype=np.float64).reshape(-1, len(sensor_names))
    ages = np.zeros(len(sensor_names)) if sensor_age_s is None else np.asarray(sensor_age_s, np.float64)
    return factory.make("glassbox_msgs/msg/FusionWeights", header=header, sensor_names=list(sensor_names),
                        weights=factory.seq(lw.mean(axis=0), "f64"), level_weights=factory.seq(lw.reshape(-1), "f64"),
                        num_levels=int(lw.shape[0]), sensor_age_s=factory.seq(ages, "f64"),
                        degraded_sensors=list(degraded_sensors))


_PRIMITIVE_DTYPES = {"bool": np.bool_, "byte": np.uint8, "char": np.uint8, "int8": np.int8, "uint8": np.uint8,
                     "int16": np.int16, "uint16": np.uint16, "int32": np.int32, "uint32": np.uint32,
                     "int64": np.int64, "uint64": np.uint64, "float32": np.float32, "float64": np.float64}


class RosbagsFactory(NumpyFactoryMixin):
    """Builds rosbags message dataclasses from a rosbags typestore (which must know every type used).

    Like rclpy constructors, fields not given take their default value (zero, empty, nested defaults).
    """

    def __init__(self, typestore: Any):
        self.typestore = typestore

    def make(self, typename: str, **fields: Any) -> Any:
        try:
            cls = self.typestore.types[typename]
            fielddefs = self.typestore.fielddefs[typename][1]
        except KeyError:
            raise ConversionError(f"message type '{typename}' is not registered in the rosbags typestore") from None
        for name, desc in fielddefs:
            if name not in fields:
                fields[name] = self._default(desc)
        return cls(**fields)

    def _default(self, desc: Any) -> Any:
        kind, spec = desc
        kind = int(kind)
        if kind == 1:                                  # BASE: (type, string bound)
            t = spec[0]
            return "" if t == "string" else (False if t == "bool" else (0.0 if t.startswith("float") else 0))
        if kind == 2:                                  # NAME: nested message
            return self.make(spec)
        sub, count = spec                              # ARRAY (3, fixed) or SEQUENCE (4)
        if int(sub[0]) == 1 and sub[1][0] in _PRIMITIVE_DTYPES:
            return np.zeros(count if kind == 3 else 0, dtype=_PRIMITIVE_DTYPES[sub[1][0]])
        return [self._default(sub) for _ in range(count)] if kind == 3 else []


def make_box_markers(factory: MessageFactory, dets: Detections3D, header: Any, namespace: str = "detections",
                     lifetime_s: float = 0.2, colors_rgba: Mapping[str, Sequence[float]] | None = None) -> Any:
    """visualization_msgs/MarkerArray: a DELETEALL, then one CUBE per 3D box (coloured by class)."""
    colors_rgba = colors_rgba or {}
    quats = yaw_to_quaternion(dets.yaw)
    sec, frac = divmod(lifetime_s, 1.0)
    lifetime = factory.make("builtin_interfaces/msg/Duration", sec=int(sec), nanosec=int(frac * 1e9))
    markers = [factory.make("visualization_msgs/msg/Marker", header=header, ns=namespace, id=0, action=3)]  # DELETEALL
    for i in range(len(dets)):
        r, g, b, a = colors_rgba.get(dets.class_names[i], (1.0, 0.8, 0.0, 0.5))
        markers.append(factory.make(
            "visualization_msgs/msg/Marker", header=header, ns=namespace, id=i + 1, type=1, action=0,  # CUBE, ADD
            pose=_pose(factory, dets.centers[i], quats[i]),
            scale=factory.make("geometry_msgs/msg/Vector3", x=float(dets.sizes[i, 0]), y=float(dets.sizes[i, 1]),
                               z=float(dets.sizes[i, 2])),
            color=factory.make("std_msgs/msg/ColorRGBA", r=float(r), g=float(g), b=float(b), a=float(a)),
            lifetime=lifetime, text=f"{dets.class_names[i]} {float(dets.scores[i]):.2f}"))
    return factory.make("visualization_msgs/msg/MarkerArray", markers=markers)
