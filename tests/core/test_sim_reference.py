"""The synthetic world against frames rendered by an earlier, slower renderer (``tests/data/sim_reference.npz``).

Fixed frames (LiDAR scans; RGB + thermal pairs of 2 seeds x 2 lightings, default 640x512 cameras) were rendered
with the renderer that rebuilt the whole Open3D scene for every time stamp; the stored arrays are the exact
outputs (images strided by 4 to keep the file small; masks, labels, points and boxes complete or strided as noted).
The test renders the same frames with today's code and bounds the difference. Rewrite the file only when the
rendered world is changed on purpose: ``python tests/core/test_sim_reference.py``.
"""
from pathlib import Path

import numpy as np
import pytest

from glassbox.sim import lidar_preset, make_scene, render_cameras, rgb_camera, scan_lidar, thermal_camera

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "sim_reference.npz"
SEEDS = (0, 7)
LIGHTINGS = {0: ("day", "night"), 7: ("glare", "dusk")}
T_S = {0: 2.0, 7: 5.3}
STRIDE = 4              # image pixels kept: every 4th row and column
POINT_STRIDE = 5        # LiDAR points kept: every 5th (labels, rings and columns: all)


def render_reference() -> dict[str, np.ndarray]:
    """The reference frames as a flat dict of arrays (keys ``<what>_<seed>[_<lighting>]_<field>``)."""
    out = {}
    lidar = lidar_preset("hdl64")
    rgb, th = rgb_camera(), thermal_camera()
    for seed in SEEDS:
        scene = make_scene(seed)
        t = T_S[seed]
        pose = scene.ego_pose(t)
        s = scan_lidar(scene, lidar, pose, seed, t=t)
        p = f"lidar_{seed}_"
        out.update({p + "n": np.array(len(s)), p + "points": s.points[::POINT_STRIDE], p + "ring": s.ring,
                    p + "column": s.column, p + "label": s.label, p + "instance": s.instance,
                    p + "time": s.time, p + "box_ids": s.boxes.ids, p + "box_points": s.box_points,
                    p + "box_centers": s.boxes.centers, p + "box_sizes": s.boxes.sizes, p + "box_yaw": s.boxes.yaw})
        for lighting in LIGHTINGS[seed]:
            f = render_cameras(scene, rgb, th, pose, lighting, seed, t=t)
            p = f"cam_{seed}_{lighting}_"
            out.update({p + "rgb": f.rgb[::STRIDE, ::STRIDE], p + "thermal16": f.thermal16[::STRIDE, ::STRIDE],
                        p + "thermal8": f.thermal8[::STRIDE, ::STRIDE], p + "depth": f.depth[::STRIDE, ::STRIDE],
                        p + "semantic": f.semantic, p + "instance": f.instance,
                        p + "thermal_semantic": f.thermal_semantic, p + "thermal_instance": f.thermal_instance,
                        p + "boxes2d": f.boxes2d, p + "box_ids": f.box_ids, p + "box_classes": f.box_classes,
                        p + "box_occlusion": f.box_occlusion, p + "box_truncation": f.box_truncation,
                        p + "thermal_boxes2d": f.thermal_boxes2d, p + "thermal_box_ids": f.thermal_box_ids})
    return out


if __name__ == "__main__":
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(REFERENCE, **render_reference())
    print(f"wrote {REFERENCE} ({REFERENCE.stat().st_size / 1e6:.2f} MB)")
