"""sensor_msgs/CompressedImage <-> numpy: JPEG and PNG, as image_transport's ``compressed`` plugin writes them.

The plugin publishes ``<image>/compressed`` with ``format`` = ``"<encoding>; <jpeg|png> compressed <coded>"``:
``encoding`` is the raw image's, ``coded`` the layout that was compressed (colour images are compressed as
``bgr8``, or ``bgr16`` for 16-bit PNG; mono and Bayer images as they are). Older publishers write only
``"jpeg"`` or ``"png"``. Decoding is OpenCV's ``imdecode``; the decoded array is returned with the encoding that
names its layout, so the raw-image conversions (``glassbox.msg.image.array_to_rgb8``) apply unchanged.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from glassbox.msg.base import ConversionError, MessageFactory
from glassbox.msg.image import IMAGE_ENCODINGS

FORMATS = ("jpeg", "png")


def compression(fmt: str) -> str:
    """"jpeg" or "png" from a CompressedImage ``format``; ``bad_encoding`` for anything else."""
    f = fmt.lower()
    if "compresseddepth" in f:
        raise ConversionError("bad_encoding", f"unsupported compressed image format '{fmt}' (the compressedDepth "
                              "transport is for depth images; subscribe with image_transport raw or compressed)")
    for kind, names in (("jpeg", ("jpeg", "jpg")), ("png", ("png",))):
        if any(n in f for n in names):
            return kind
    raise ConversionError("bad_encoding", f"unsupported compressed image format '{fmt}' (expected jpeg or png)")


def compressed_to_array(msg: Any) -> tuple[np.ndarray, str]:
    """Decode a CompressedImage -> (array, the encoding naming its layout: bgr8, rgb8, bgra8, mono8, mono16,
    bgr16, a Bayer encoding, ...)."""
    fmt = str(msg.format)
    kind = compression(fmt)
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size == 0:
        raise ConversionError("zero_size", f"compressed image ({fmt}) has no data")
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if arr is None or arr.size == 0:
        raise ConversionError("undecodable", f"{data.size} bytes are not a valid {kind} image (format '{fmt}')")
    declared, _, coded = fmt.partition(";")
    declared = declared.strip()
    bits = "8" if arr.dtype == np.uint8 else "16"
    if arr.ndim == 2:
        if IMAGE_ENCODINGS.get(declared) == (arr.dtype.str[1:], 1):
            return arr, declared               # mono8, mono16, 16UC1, a Bayer mosaic: as the raw image was
        return arr, f"mono{bits}"
    order = "rgb" if "compressed rgb" in coded else "bgr"   # OpenCV's own order unless the format says RGB
    return arr, order + ("a" if arr.shape[2] == 4 else "") + bits


def make_compressed_image(factory: MessageFactory, arr: np.ndarray, encoding: str, header: Any,
                          kind: str = "jpeg", jpeg_quality: int = 95) -> Any:
    """A CompressedImage of ``arr`` (layout ``encoding``) as image_transport's ``compressed`` plugin writes it:
    colour is compressed as bgr (``"rgb8; jpeg compressed bgr8"``), mono as it is."""
    if kind not in FORMATS:
        raise ValueError(f"kind must be one of {FORMATS}, got '{kind}'")
    arr = np.asarray(arr)
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    coded = ""
    if channels >= 3:
        if encoding.startswith("rgb"):
            arr = arr[:, :, [2, 1, 0, 3][:channels]]
        coded = "bgr" + ("a" if channels == 4 else "") + ("16" if arr.dtype == np.uint16 else "8")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if kind == "jpeg" else []
    ok, buf = cv2.imencode(".jpg" if kind == "jpeg" else ".png", np.ascontiguousarray(arr), params)
    if not ok:
        raise ConversionError("bad_encoding", f"OpenCV cannot write {arr.shape} {arr.dtype} as {kind}")
    return factory.make("sensor_msgs/msg/CompressedImage", header=header, format=f"{encoding}; {kind} compressed "
                        f"{coded}".rstrip(), data=factory.seq(buf.reshape(-1), "u8"))
