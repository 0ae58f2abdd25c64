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


@pytest.fixture(scope="module")
def frames():
    with np.load(REFERENCE) as ref:
        old = {k: ref[k] for k in ref.files}
    return old, render_reference()


def _psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(peak ** 2 / mse)


@pytest.mark.parametrize("seed", SEEDS)
def test_lidar_scans_match_the_reference(frames, seed):
    old, new = frames
    p = f"lidar_{seed}_"
    assert int(new[p + "n"]) == int(old[p + "n"])
    for key in ("ring", "column", "label", "instance", "time", "box_ids", "box_points", "box_centers",
                "box_sizes", "box_yaw"):
        np.testing.assert_array_equal(new[p + key], old[p + key], err_msg=key)
    # Ranges agree to well under 1 mm. Intensity changes only where two triangles of one object coincide (a head
    # lamp flush with the body): which of them a ray meets depends on the ray caster's BVH, so on how the scene
    # was split into Open3D scenes; such points are a few per scan.
    np.testing.assert_allclose(new[p + "points"][:, :3], old[p + "points"][:, :3], rtol=0, atol=1e-3)
    changed = np.abs(new[p + "points"][:, 3] - old[p + "points"][:, 3]) > 1e-6
    assert changed.mean() < 1e-3


@pytest.mark.parametrize("seed,lighting", [(s, li) for s in SEEDS for li in LIGHTINGS[s]])
def test_camera_frames_match_the_reference(frames, seed, lighting):
    old, new = frames
    p = f"cam_{seed}_{lighting}_"
    for key in ("semantic", "instance", "thermal_semantic", "thermal_instance", "boxes2d", "box_ids", "box_classes",
                "thermal_boxes2d", "thermal_box_ids"):
        np.testing.assert_array_equal(new[p + key], old[p + key], err_msg=key)
    np.testing.assert_allclose(new[p + "box_occlusion"], old[p + "box_occlusion"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(new[p + "box_truncation"], old[p + "box_truncation"], rtol=0, atol=1e-6)
    sky = ~np.isfinite(old[p + "depth"])
    np.testing.assert_array_equal(~np.isfinite(new[p + "depth"]), sky)
    np.testing.assert_allclose(new[p + "depth"][~sky], old[p + "depth"][~sky], rtol=0, atol=1e-3)
    # Pixels differ only at coinciding triangles (see above) and by float rounding.
    assert _psnr(new[p + "rgb"], old[p + "rgb"], 255.0) > 45.0
    assert _psnr(new[p + "thermal8"], old[p + "thermal8"], 255.0) > 45.0
    span = float(old[p + "thermal16"].max()) - float(old[p + "thermal16"].min())
    assert _psnr(new[p + "thermal16"], old[p + "thermal16"], span) > 45.0


def test_culled_casts_equal_full_casts(monkeypatch):
    """Rays are cast against the moving objects only where a moving box may be seen (or cast its shadow); with
    every ray cast against them, the frames are identical."""
    scene = make_scene(0)
    t = 2.0
    pose = scene.ego_pose(t)
    assert scene.moving.any()
    lidar, rgb, th = lidar_preset("hdl64"), rgb_camera(width=320, height=256), thermal_camera(width=320, height=256)
    culled = (scan_lidar(scene, lidar, pose, 0, t=t), render_cameras(scene, rgb, th, pose, "day", 0, t=t))
    import glassbox.sim.camera as camera
    import glassbox.sim.lidar as lidar_mod
    import glassbox.sim.shading as shading

    def every_pixel(scene, cfg, *args, **kwargs):
        return np.ones(cfg.height * cfg.width, bool)

    monkeypatch.setattr(camera, "moving_pixels", every_pixel)
    monkeypatch.setattr(shading, "moving_pixels", every_pixel)
    monkeypatch.setattr(lidar_mod, "moving_rays", lambda cfg, boxes: np.arange(cfg.num_beams * cfg.azimuth_steps))
    full = (scan_lidar(scene, lidar, pose, 0, t=t), render_cameras(scene, rgb, th, pose, "day", 0, t=t))
    for name in ("points", "ring", "label", "instance"):
        np.testing.assert_array_equal(getattr(culled[0], name), getattr(full[0], name), err_msg=name)
    for name in ("rgb", "thermal16", "semantic", "instance", "depth", "boxes2d", "box_occlusion"):
        np.testing.assert_array_equal(getattr(culled[1], name), getattr(full[1], name), err_msg=name)
    # The moving objects are in view and in the LiDAR scan (so the culling was exercised).
    moving_ids = scene.boxes_at(t).ids[scene.moving]
    assert np.isin(culled[0].instance, moving_ids).sum() > 100
    assert np.isin(culled[1].instance, moving_ids).sum() > 100
