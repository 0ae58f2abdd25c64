"""sensor_msgs/CameraInfo <-> :class:`glassbox.calibration.CameraModel`.

A CameraInfo's K and P describe the full-resolution sensor; its ROI (a window of it) and binning (super-pixels
of ``binning_x`` x ``binning_y``) say which image was published. :func:`camera_model_from_info` returns the model
of the published image, as ``image_geometry`` does (principal point shifted by the ROI offset, the rows of K and
P divided by the binning); :func:`make_camera_info` writes a model back with no ROI and no binning.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from glassbox.calibration import CameraModel
from glassbox.msg.base import ConversionError, MessageFactory


def camera_info_topic(image_topic: str) -> str:
    """The camera_info beside an image topic, as image_transport names it: ``/cam/front/image_raw`` ->
    ``/cam/front/camera_info``."""
    return image_topic.rsplit("/", 1)[0] + "/camera_info"


def camera_model_from_info(msg: Any) -> CameraModel:
    """Decode a CameraInfo into the model of the image it describes (ROI and binning applied)."""
    width, height = int(msg.width), int(msg.height)
    if width == 0 or height == 0:
        raise ConversionError("zero_size", f"camera_info describes an empty image ({width}x{height})")
    arrays = {name: np.asarray(getattr(msg, name), np.float64).reshape(-1) for name in ("k", "r", "p")}
    for name, size in (("k", 9), ("r", 9), ("p", 12)):
        if arrays[name].size != size:
            raise ConversionError("size_mismatch", f"camera_info {name} has {arrays[name].size} values, "
                                  f"expected {size}")
    k, p = arrays["k"].reshape(3, 3), arrays["p"].reshape(3, 4)
    if not (np.isfinite(k).all() and np.isfinite(p).all()):
        raise ConversionError("non_finite", "camera_info K or P holds NaN or inf")
    roi = msg.roi
    if int(roi.width) and int(roi.height):
        shift = np.array([[1.0, 0.0, -float(roi.x_offset)], [0.0, 1.0, -float(roi.y_offset)], [0.0, 0.0, 1.0]])
        k, p = shift @ k, shift @ p
        width, height = int(roi.width), int(roi.height)
    bx, by = max(int(msg.binning_x), 1), max(int(msg.binning_y), 1)
    if bx > 1 or by > 1:
        b = np.diag([1.0 / bx, 1.0 / by, 1.0])
        k, p = b @ k, b @ p
        width, height = width // bx, height // by
    return CameraModel(width, height, k, p, np.asarray(msg.d, np.float64).copy(), arrays["r"].reshape(3, 3),
                       str(msg.distortion_model))


def make_camera_info(factory: MessageFactory, model: CameraModel, header: Any) -> Any:
    """sensor_msgs/CameraInfo of ``model`` (no ROI, no binning) with ``header``."""
    roi = factory.make("sensor_msgs/msg/RegionOfInterest", x_offset=0, y_offset=0, height=0, width=0,
                       do_rectify=False)
    flat = (lambda a: np.ascontiguousarray(np.asarray(a, np.float64).reshape(-1)))  # noqa: E731
    return factory.make("sensor_msgs/msg/CameraInfo", header=header, height=int(model.height),
                        width=int(model.width), distortion_model=str(model.distortion_model),
                        d=factory.seq(np.asarray(model.d, np.float64), "f64"), k=flat(model.k), r=flat(model.r),
                        p=flat(model.p), binning_x=0, binning_y=0, roi=roi)
