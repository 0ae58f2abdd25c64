"""sensor_msgs/PointCloud2 <-> numpy, by field name and offset with a structured dtype.

A cloud is decoded once (:func:`pointcloud2_to_array`, a view on the message data); the columns a consumer needs
are then taken from that array (:func:`cloud_to_xyz`), never by re-reading the message and never per point. Any
field order, extra fields, padding inside a point or a row, the big-endian flag and organised clouds work.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from glassbox.msg.base import ConversionError, MessageFactory

# sensor_msgs/PointField datatype codes -> numpy base types
POINTFIELD_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
_NUMPY_TO_POINTFIELD = {np.dtype(v).str[1:]: k for k, v in POINTFIELD_DTYPES.items()}


def pointcloud2_dtype(fields: Sequence[Any], point_step: int, is_bigendian: bool) -> np.dtype:
    """Structured dtype of one point, from the message's PointField list (name, offset, datatype, count)."""
    endian = ">" if is_bigendian else "<"
    names, formats, offsets = [], [], []
    for f in fields:
        if f.datatype not in POINTFIELD_DTYPES:
            raise ConversionError("bad_field", f"PointCloud2 field '{f.name}' has unknown datatype {f.datatype}")
        if f.name in names:
            raise ConversionError("bad_field", f"PointCloud2 field '{f.name}' appears twice")
        base = endian + POINTFIELD_DTYPES[f.datatype]
        count = int(f.count) if f.count else 1
        size = np.dtype(base).itemsize * count
        if f.offset + size > point_step:
            raise ConversionError("bad_field", f"PointCloud2 field '{f.name}' (offset {f.offset}, {size} bytes) "
                                  f"does not fit in point_step {point_step}")
        names.append(f.name)
        formats.append(base if count == 1 else (base, (count,)))
        offsets.append(int(f.offset))
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": int(point_step)})


def pointcloud2_to_array(msg: Any) -> np.ndarray:
    """Decode a PointCloud2 into a structured array of shape (height, width), a view on the message data.

    Raises :class:`ConversionError` with the reason when the message is inconsistent.
    """
    height, width, point_step, row_step = int(msg.height), int(msg.width), int(msg.point_step), int(msg.row_step)
    if point_step <= 0:
        raise ConversionError("bad_layout", f"PointCloud2 point_step must be positive, got {point_step}")
    if row_step < width * point_step:
        raise ConversionError("bad_layout", f"PointCloud2 row_step {row_step} < width {width} * point_step "
                              f"{point_step}")
    dtype = pointcloud2_dtype(msg.fields, point_step, bool(msg.is_bigendian))
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size != row_step * height:
        raise ConversionError("size_mismatch", f"PointCloud2 data has {data.size} bytes, expected row_step "
                              f"{row_step} * height {height} = {row_step * height}")
    if height * width == 0:
        return np.empty((height, width), dtype=dtype)
    return np.ndarray(shape=(height, width), dtype=dtype, buffer=data, strides=(row_step, point_step))


def cloud_to_xyz(cloud: np.ndarray, fields: Sequence[str] = ("x", "y", "z"), *, skip_nans: bool = True,
                 dtype: Any = np.float32) -> np.ndarray:
    """The named fields of a decoded cloud (:func:`pointcloud2_to_array`) as a float array (N, len(fields)).

    Missing ``x``/``y``/``z`` raise :class:`ConversionError`; any other missing field (e.g. intensity) is filled
    with zeros. With ``skip_nans`` (default) points whose x, y or z is not finite are dropped; otherwise every
    point is kept in row-major order, so an organised cloud maps back to its (height, width) grid.
    When the cloud holds exactly these float32 fields back to back, the result shares the message's memory.
    """
    names = cloud.dtype.names or ()
    for axis in ("x", "y", "z"):
        if axis in fields and axis not in names:
            raise ConversionError("missing_field", f"PointCloud2 has no '{axis}' field (fields: "
                                  f"{', '.join(names) or 'none'})")
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
            out = out[np.isfinite(out[:, xyz_cols]).all(axis=1)]
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


def pointcloud2_to_xyz(msg: Any, *, fields: Sequence[str] = ("x", "y", "z"), skip_nans: bool = True,
                       dtype: Any = np.float32) -> np.ndarray:
    """Decode the named fields of a PointCloud2 into a float array (N, len(fields)) (see :func:`cloud_to_xyz`)."""
    return cloud_to_xyz(pointcloud2_to_array(msg), fields, skip_nans=skip_nans, dtype=dtype)


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
            raise ConversionError("bad_field", f"field '{name}' has dtype {base}, which PointCloud2 cannot carry")
        out.append((name, int(offset), _NUMPY_TO_POINTFIELD[key], int(np.prod(shape)) if shape else 1))
    return out


def xyz_to_structured(points: np.ndarray, names: Sequence[str] = ("x", "y", "z", "intensity"),
                      extra: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """Pack a float array (N, len(names)) and optional extra per-point columns into a structured array."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != len(names):
        raise ConversionError("size_mismatch", f"points must have shape (N, {len(names)}) for fields "
                              f"{list(names)}, got {points.shape}")
    extra = dict(extra or {})
    descr = [(n, "<f4") for n in names] + [(k, np.asarray(v).dtype.newbyteorder("<")) for k, v in extra.items()]
    out = np.empty(points.shape[0], dtype=descr)
    for j, n in enumerate(names):
        out[n] = points[:, j]
    for k, v in extra.items():
        if len(v) != points.shape[0]:
            raise ConversionError("size_mismatch", f"extra field '{k}' has {len(v)} values for "
                                  f"{points.shape[0]} points")
        out[k] = v
    return out


def make_pointcloud2(factory: MessageFactory, cloud: np.ndarray, header: Any) -> Any:
    """Build a PointCloud2 from a structured array of shape (N,) (unorganised) or (H, W) (organised)."""
    cloud = np.asarray(cloud)
    if cloud.dtype.names is None:
        raise ConversionError("bad_field", "make_pointcloud2 needs a structured array (see xyz_to_structured)")
    if cloud.ndim == 1:
        cloud = cloud.reshape(1, -1)
    if cloud.ndim != 2:
        raise ConversionError("bad_layout", f"cloud must be 1-D or 2-D, got shape {cloud.shape}")
    big = cloud.dtype.fields[cloud.dtype.names[0]][0].byteorder == ">"
    cloud = np.ascontiguousarray(cloud)
    fields = [factory.make("sensor_msgs/msg/PointField", name=n, offset=o, datatype=d, count=c)
              for n, o, d, c in pointcloud2_fields_from_dtype(cloud.dtype)]
    height, width = cloud.shape
    step = cloud.dtype.itemsize
    return factory.make("sensor_msgs/msg/PointCloud2", header=header, height=height, width=width, fields=fields,
                        is_bigendian=big, point_step=step, row_step=step * width,
                        data=factory.seq(cloud.view(np.uint8).reshape(-1), "u8"), is_dense=False)
