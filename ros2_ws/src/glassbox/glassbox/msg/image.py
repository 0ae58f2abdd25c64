"""sensor_msgs/Image <-> numpy (raw images), and the camera stages' two decoders.

:func:`decode_color` and :func:`decode_thermal` are the one place the camera stages turn a message into pixels.
They take raw ``sensor_msgs/Image`` today; compressed images (``sensor_msgs/CompressedImage``, which has a
``format`` field instead of ``encoding``/``step``) belong in a sibling module ``glassbox.msg.compressed`` whose
decoder returns the same arrays, dispatched from these two functions, so that no stage changes.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from glassbox.msg.base import ConversionError, MessageFactory

# encoding -> (numpy base type, channels)
IMAGE_ENCODINGS: dict[str, tuple[str, int]] = {
    "rgb8": ("u1", 3), "bgr8": ("u1", 3), "rgba8": ("u1", 4), "bgra8": ("u1", 4),
    "mono8": ("u1", 1), "mono16": ("u2", 1), "8UC1": ("u1", 1), "8UC3": ("u1", 3), "8UC4": ("u1", 4),
    "16UC1": ("u2", 1), "16SC1": ("i2", 1), "32SC1": ("i4", 1), "32FC1": ("f4", 1), "32FC3": ("f4", 3),
    "64FC1": ("f8", 1), "rgb16": ("u2", 3), "bgr16": ("u2", 3),
}
#: what a colour camera stage accepts, and a thermal one
COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC3")
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
    """A decoded 8-bit colour or mono image (:func:`image_to_array`) -> contiguous RGB (H, W, 3) uint8."""
    if encoding in ("rgb8", "8UC3"):
        return np.ascontiguousarray(arr)
    if encoding == "bgr8":
        return np.ascontiguousarray(arr[:, :, ::-1])
    if encoding == "rgba8":
        return np.ascontiguousarray(arr[:, :, :3])
    if encoding == "bgra8":
        return np.ascontiguousarray(arr[:, :, 2::-1])
    if encoding in ("mono8", "8UC1"):
        return np.repeat(arr[:, :, None], 3, axis=2)
    raise ConversionError("bad_encoding", f"cannot convert encoding '{encoding}' to rgb8")


def image_to_rgb8(msg: Any) -> np.ndarray:
    """Decode a colour or mono 8-bit image to contiguous RGB (H, W, 3) uint8."""
    return array_to_rgb8(image_to_array(msg), str(msg.encoding))


def _check_encoding(msg: Any, allowed: tuple[str, ...], what: str) -> None:
    if str(msg.encoding) not in allowed:
        raise ConversionError("bad_encoding", f"unsupported {what} encoding '{msg.encoding}' (expected one of "
                              f"{', '.join(allowed)})")


def decode_color(msg: Any) -> np.ndarray:
    """A colour camera's image message -> (H, W, 3) RGB uint8 (8-bit colour or mono encodings)."""
    _check_encoding(msg, COLOR_ENCODINGS, "camera")
    return image_to_rgb8(msg)


def decode_thermal(msg: Any) -> np.ndarray:
    """A thermal camera's image message (16-bit raw or 8-bit) -> (H, W) uint16 or uint8."""
    _check_encoding(msg, THERMAL_ENCODINGS, "thermal")
    return np.ascontiguousarray(image_to_array(msg))


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
