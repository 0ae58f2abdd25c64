"""sensor_msgs/Image <-> numpy (raw images), and the camera stages' two decoders.

:func:`decode_color` and :func:`decode_thermal` are the one place the camera stages turn a message into pixels.
They take raw ``sensor_msgs/Image`` and ``sensor_msgs/CompressedImage`` (``glassbox.msg.compressed``; told apart by
the ``format`` field a compressed image has instead of ``encoding``) and return the same arrays for both.

A colour camera stage takes what camera drivers send: rgb8, bgr8, rgba8, bgra8, mono8, mono16 / 16UC1 (the high
byte), 16-bit colour (rgb16, bgr16, ...; the high byte), YUV 4:2:2 in both byte orders (``yuv422`` / ``uyvy``:
U Y0 V Y1; ``yuv422_yuy2`` / ``yuyv``: Y0 U Y1 V; ITU-R BT.601 video range, as OpenCV and cv_bridge decode them)
and 8-bit Bayer mosaics (bayer_rggb8, bayer_bggr8, bayer_gbrg8, bayer_grbg8, named by their first row and
column, demosaiced bilinearly). Anything else is rejected with reason ``bad_encoding`` naming the encoding.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from glassbox.msg.base import ConversionError, MessageFactory

# encoding -> (numpy base type, channels)
IMAGE_ENCODINGS: dict[str, tuple[str, int]] = {
    "rgb8": ("u1", 3), "bgr8": ("u1", 3), "rgba8": ("u1", 4), "bgra8": ("u1", 4),
    "mono8": ("u1", 1), "mono16": ("u2", 1), "8UC1": ("u1", 1), "8UC3": ("u1", 3), "8UC4": ("u1", 4),
    "16UC1": ("u2", 1), "16SC1": ("i2", 1), "32SC1": ("i4", 1), "32FC1": ("f4", 1), "32FC3": ("f4", 3),
    "64FC1": ("f8", 1), "rgb16": ("u2", 3), "bgr16": ("u2", 3), "rgba16": ("u2", 4), "bgra16": ("u2", 4),
    "yuv422": ("u1", 2), "uyvy": ("u1", 2), "yuv422_yuy2": ("u1", 2), "yuyv": ("u1", 2),
    "bayer_rggb8": ("u1", 1), "bayer_bggr8": ("u1", 1), "bayer_gbrg8": ("u1", 1), "bayer_grbg8": ("u1", 1),
}
# OpenCV names a Bayer pattern by the second row's second and third pixels: RGGB is its "BG" (as in cv_bridge)
_BAYER_TO_RGB = {"bayer_rggb8": cv2.COLOR_BayerBG2RGB, "bayer_bggr8": cv2.COLOR_BayerRG2RGB,
                 "bayer_gbrg8": cv2.COLOR_BayerGR2RGB, "bayer_grbg8": cv2.COLOR_BayerGB2RGB}
_YUV422_TO_RGB = {"yuv422": cv2.COLOR_YUV2RGB_UYVY, "uyvy": cv2.COLOR_YUV2RGB_UYVY,
                  "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUYV, "yuyv": cv2.COLOR_YUV2RGB_YUYV}
# the 8-bit channel layout of every colour-convertible encoding: (first colour channel is red, has alpha)
_CHANNEL_ORDER = {"rgb8": "rgb", "8UC3": "rgb", "rgb16": "rgb", "bgr8": "bgr", "bgr16": "bgr", "rgba8": "rgba",
                  "rgba16": "rgba", "bgra8": "bgra", "bgra16": "bgra", "mono8": "mono", "8UC1": "mono",
                  "mono16": "mono", "16UC1": "mono"}
#: what a colour camera stage accepts, and a thermal one
COLOR_ENCODINGS = tuple(_CHANNEL_ORDER) + tuple(_YUV422_TO_RGB) + tuple(_BAYER_TO_RGB)
THERMAL_ENCODINGS = ("mono16", "16UC1", "mono8", "8UC1")


def image_to_array(msg: Any, *, copy: bool = False) -> np.ndarray:
    """Decode an Image into (H, W) for one channel or (H, W, C), in the message's own channel order.

    Handles row padding (step > width * pixel size) and big-endian data (converted to native order).
    Raises :class:`ConversionError` for unknown encodings, zero-size images and size mismatches.
    """
    enc = str(msg.encoding)
    if enc not in IMAGE_ENCODINGS:
        raise ConversionError("bad_encoding", f"unsupported image encoding '{enc}' (supported: "
                              f"{', '.join(IMAGE_ENCODINGS)})")
    base, channels = IMAGE_ENCODINGS[enc]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise ConversionError("zero_size", f"image is empty ({width}x{height})")
    dtype = np.dtype((">" if msg.is_bigendian else "<") + base)
    pixel = dtype.itemsize * channels
    if step < width * pixel:
        raise ConversionError("bad_layout", f"image step {step} < width {width} * {pixel} bytes per pixel "
                              f"for '{enc}'")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size != step * height:
        raise ConversionError("size_mismatch", f"image data has {data.size} bytes, expected step {step} * height "
                              f"{height} = {step * height}")
    arr = np.ndarray(shape=(height, width, channels), dtype=dtype, buffer=data,
                     strides=(step, pixel, dtype.itemsize))
    if dtype.byteorder == ">" and dtype.itemsize > 1:
        arr = arr.astype(dtype.newbyteorder("="))
    elif copy:
        arr = arr.copy()
    return arr[:, :, 0] if channels == 1 else arr


def array_to_rgb8(arr: np.ndarray, encoding: str) -> np.ndarray:
    """A decoded image (:func:`image_to_array`) of any of :data:`COLOR_ENCODINGS` -> contiguous RGB (H, W, 3)
    uint8. 16-bit images give their high byte."""
    if encoding in _YUV422_TO_RGB:
        if arr.shape[1] % 2:
            raise ConversionError("bad_layout", f"'{encoding}' needs an even width (pixel pairs share U and V), "
                                  f"got {arr.shape[1]}")
        return cv2.cvtColor(np.ascontiguousarray(arr), _YUV422_TO_RGB[encoding])
    if encoding in _BAYER_TO_RGB:
        return cv2.cvtColor(np.ascontiguousarray(arr), _BAYER_TO_RGB[encoding])
    order = _CHANNEL_ORDER.get(encoding)
    if order is None:
        raise ConversionError("bad_encoding", f"cannot convert encoding '{encoding}' to rgb8 (supported: "
                              f"{', '.join(COLOR_ENCODINGS)})")
    if arr.dtype == np.uint16:
        arr = (arr >> 8).astype(np.uint8)
    if order == "mono":
        return np.repeat(arr[:, :, None], 3, axis=2)
    rgb = arr[:, :, :3] if order.startswith("rgb") else arr[:, :, 2::-1]
    return np.ascontiguousarray(rgb)


def image_to_rgb8(msg: Any) -> np.ndarray:
    """Decode a raw colour or mono image (any of :data:`COLOR_ENCODINGS`) to contiguous RGB (H, W, 3) uint8."""
    return array_to_rgb8(image_to_array(msg), str(msg.encoding))


def is_compressed(msg: Any) -> bool:
    """A ``sensor_msgs/CompressedImage`` (it has ``format`` where a raw image has ``encoding``)."""
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


def color_order(msg: Any) -> str:
    """"bgr8" when the camera sends blue first (raw bgr8 / bgra8, or a compressed image of a bgr image), else
    "rgb8": the encoding in which an image derived from this one is published."""
    if is_compressed(msg):
        declared = str(msg.format).partition(";")[0].strip()
        return "rgb8" if declared.startswith("rgb") or declared.startswith("mono") else "bgr8"
    return "bgr8" if str(msg.encoding) in ("bgr8", "bgra8", "bgr16", "bgra16") else "rgb8"


def _check_encoding(encoding: str, allowed: tuple[str, ...], what: str) -> None:
    if encoding not in allowed:
        raise ConversionError("bad_encoding", f"unsupported {what} encoding '{encoding}' (expected one of "
                              f"{', '.join(allowed)})")


def decode_color(msg: Any) -> np.ndarray:
    """A colour camera's Image or CompressedImage -> (H, W, 3) RGB uint8 (see the module docstring)."""
    if is_compressed(msg):
        from glassbox.msg.compressed import compressed_to_array
        arr, encoding = compressed_to_array(msg)
    else:
        encoding = str(msg.encoding)
        _check_encoding(encoding, COLOR_ENCODINGS, "camera")
        arr = image_to_array(msg)
    return array_to_rgb8(arr, encoding)


def decode_thermal(msg: Any) -> np.ndarray:
    """A thermal camera's Image or CompressedImage (16-bit raw or 8-bit) -> (H, W) uint16 or uint8."""
    if is_compressed(msg):
        from glassbox.msg.compressed import compressed_to_array
        arr, encoding = compressed_to_array(msg)
        _check_encoding(encoding, THERMAL_ENCODINGS, "thermal")
    else:
        _check_encoding(str(msg.encoding), THERMAL_ENCODINGS, "thermal")
        arr = image_to_array(msg)
    return np.ascontiguousarray(arr)


def make_image(factory: MessageFactory, arr: np.ndarray, encoding: str, header: Any) -> Any:
    """Build an Image from (H, W) or (H, W, C) whose dtype and channel count match ``encoding``."""
    if encoding not in IMAGE_ENCODINGS:
        raise ConversionError("bad_encoding", f"unsupported image encoding '{encoding}'")
    base, channels = IMAGE_ENCODINGS[encoding]
    arr = np.asarray(arr)
    shape_c = 1 if arr.ndim == 2 else (arr.shape[2] if arr.ndim == 3 else -1)
    if shape_c != channels or arr.dtype.str[1:] != base:
        raise ConversionError("bad_encoding", f"array {arr.shape} {arr.dtype} does not match encoding "
                              f"'{encoding}' ({channels} channel(s) of {np.dtype(base)})")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ConversionError("zero_size", f"image is empty ({arr.shape[1]}x{arr.shape[0]})")
    arr = np.ascontiguousarray(arr, dtype=np.dtype("<" + base))
    height, width = arr.shape[:2]
    return factory.make("sensor_msgs/msg/Image", header=header, height=height, width=width, encoding=encoding,
                        is_bigendian=False, step=width * channels * arr.dtype.itemsize,
                        data=factory.seq(arr.view(np.uint8).reshape(-1), "u8"))
