"""PointCloud2 and Image conversion vs a plain memcpy of the same bytes.

Decode = message -> numpy arrays the pipelines use (xyzi float32 for clouds, the pixel array for images);
encode = numpy -> rclpy message. Goals: decode <= 2x memcpy; encode <= 1 ms per 2 MB.
Run: `make bench` or `python bench/bench_converters.py` in the sourced workspace.
"""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import Header

from _common import print_table, time_ms, write_results
from glassbox import msg as gm
from glassbox_ros import converters as cv


def cloud_case(name: str, n: int, extra_fields: int) -> dict:
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(n, 4)).astype(np.float32)
    extra = {"ring": rng.integers(0, 64, n).astype(np.uint16), "time": rng.random(n).astype(np.float32),
             "reflectivity": rng.integers(0, 255, n).astype(np.uint16), "ambient": rng.random(n).astype(np.float32),
             "range": rng.random(n).astype(np.float32)}
    extra = dict(list(extra.items())[:extra_fields])
    cloud = gm.xyz_to_structured(pts, extra=extra)
    msg: PointCloud2 = cv.build.pointcloud2(cloud, Header())
    raw = np.frombuffer(msg.data, np.uint8)
    return {"case": name, "bytes": raw.size,
            "memcpy_ms": time_ms(lambda: raw.copy())["median_ms"],
            "decode_ms": time_ms(lambda: gm.pointcloud2_to_xyzi(msg))["median_ms"],
            "encode_ms": time_ms(lambda: cv.build.pointcloud2(cloud, Header()))["median_ms"]}


def image_case(name: str, arr: np.ndarray, encoding: str) -> dict:
    msg: Image = cv.build.image(arr, encoding, Header())
    raw = np.frombuffer(msg.data, np.uint8)
    return {"case": name, "bytes": raw.size,
            "memcpy_ms": time_ms(lambda: raw.copy())["median_ms"],
            "decode_ms": time_ms(lambda: gm.image_to_array(msg, copy=True))["median_ms"],
            "encode_ms": time_ms(lambda: cv.build.image(arr, encoding, Header()))["median_ms"]}


def main() -> None:
    rng = np.random.default_rng(1)
    rows = [cloud_case("PointCloud2 130k pts, 4 fields", 130_000, 0),
            cloud_case("PointCloud2 130k pts, 9 fields", 130_000, 5),
            image_case("Image 1280x720 rgb8", rng.integers(0, 255, (720, 1280, 3)).astype(np.uint8), "rgb8"),
            image_case("Image 640x512 mono16", rng.integers(0, 65535, (512, 640)).astype(np.uint16), "mono16")]
    for r in rows:
        r["decode_vs_memcpy"] = r["decode_ms"] / r["memcpy_ms"]
        r["encode_ms_per_2MB"] = r["encode_ms"] * 2e6 / r["bytes"]
    print_table(rows, ["case", "bytes", "memcpy_ms", "decode_ms", "decode_vs_memcpy", "encode_ms",
                       "encode_ms_per_2MB"])
    write_results("converters", rows, goals={"decode_vs_memcpy": "<= 2", "encode_ms_per_2MB": "<= 1"})


if __name__ == "__main__":
    main()
