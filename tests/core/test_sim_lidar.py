"""Synthetic LiDAR against hand geometry: which beams hit a known box, at which ranges, with which labels."""
import numpy as np
import pytest

from glassbox.classes import SEMANTIC_ID
from glassbox.sim import (Boxes3D, LidarConfig, LidarError, lidar_preset, make_box_scene, make_scene, scan_lidar)
from glassbox.sim.scene import SceneError, pose_matrix

MOUNT_Z = 0.75


def _one_car(x=8.0 + 2.0, yaw=0.0) -> Boxes3D:
    # Car of 4 x 2 x 1.5 m whose front face (facing the sensor) is the plane x = 8 when yaw = 0.
    return Boxes3D(np.array([[x, 0.0, 0.75]], np.float32), np.array([[4.0, 2.0, 1.5]], np.float32),
                   np.array([yaw], np.float32), np.array([0]), np.array([7], np.int32))


def _clean(elev, steps=720, **kw) -> LidarConfig:
    base = dict(name="test", elevations_deg=tuple(elev), azimuth_steps=steps, range_noise_m=0.0, dropout=0.0,
                grazing_dropout=0.0, min_intensity=0.0, mount_xyz=(0.0, 0.0, MOUNT_Z))
    base.update(kw)
    return LidarConfig(**base)


def test_box_hit_by_the_right_beams_at_the_right_ranges():
    cfg = _clean([-10.0, -4.0, 0.0, 4.0, 10.0])
    scan = scan_lidar(make_box_scene(_one_car(), ground=False), cfg, np.eye(4), seed=0)
    # Independent prediction: a ray from (0, 0, 0.75) hits the face x = 8 iff |y| <= 1 and 0 <= z <= 1.5 there.
    elev = np.deg2rad(np.sort(cfg.elevations_deg))
    az = np.pi - 2 * np.pi * (np.arange(cfg.azimuth_steps) + 0.5) / cfg.azimuth_steps
    e, a = np.meshgrid(elev, az, indexing="ij")
    dx = np.cos(e) * np.cos(a)
    front = dx > 0
    t = np.where(front, 8.0 / np.where(front, dx, 1.0), np.inf)
    tf = np.where(front, t, 0.0)
    y, z = tf * np.cos(e) * np.sin(a), MOUNT_Z + tf * np.sin(e)
    hit = front & (np.abs(y) <= 1.0) & (z >= 0.0) & (z <= 1.5)
    ring_exp, col_exp = np.nonzero(hit)
    assert set(np.unique(ring_exp)) == {1, 2, 3}                 # beams -4, 0, +4 deg; +-10 deg miss
    got = set(zip(scan.ring.astype(int), scan.column.astype(int)))
    assert got == set(zip(ring_exp, col_exp))
    # Points lie on the face x = 8 (LiDAR frame z is relative to the mount) at the closed-form range.
    np.testing.assert_allclose(scan.points[:, 0], 8.0, atol=2e-4)
    r = np.linalg.norm(scan.points[:, :3], axis=1)
    order = np.lexsort((scan.column, scan.ring))
    np.testing.assert_allclose(np.sort(r[order]), np.sort(t[hit]), rtol=1e-5)
    assert np.all(scan.label == SEMANTIC_ID["car"]) and np.all(scan.instance == 7)
    assert len(scan.boxes) == 1 and scan.box_points[0] == len(scan)
    np.testing.assert_allclose(scan.boxes.centers[0], [10.0, 0.0, 0.0], atol=1e-5)   # box centre at mount height


def test_labels_equal_the_primitive_hit():
    boxes = Boxes3D(np.array([[12.0, 3.0, 0.8], [-9.0, -2.0, 0.9], [6.0, -7.0, 0.85]], np.float32),
                    np.array([[4.5, 1.8, 1.6], [0.6, 0.7, 1.8], [1.8, 0.6, 1.7]], np.float32),
                    np.array([0.3, -1.0, 2.0], np.float32), np.array([0, 1, 2]), np.array([3, 5, 9], np.int32))
    scene = make_box_scene(boxes, ground=True)
    scan = scan_lidar(scene, _clean(np.linspace(-25, 5, 24), steps=1024, mount_xyz=(0, 0, 1.73)), np.eye(4), 0)
    world = scan.points[:, :3].astype(np.float64) + [0, 0, 1.73]
    inside = boxes.contains(world, margin=1e-3)                 # (N, M), independent point-in-box geometry
    in_any = inside.any(1)
    which = inside.argmax(1)
    sem_of_box = np.array([SEMANTIC_ID["car"], SEMANTIC_ID["pedestrian"], SEMANTIC_ID["cyclist"]])
    np.testing.assert_array_equal(scan.label[in_any], sem_of_box[which[in_any]])
    np.testing.assert_array_equal(scan.instance[in_any], boxes.ids[which[in_any]])
    assert np.all(scan.label[~in_any] == SEMANTIC_ID["road"])
    np.testing.assert_allclose(world[~in_any, 2], 0.0, atol=1e-3)
    assert set(np.unique(scan.instance)) == {0, 3, 5, 9}


def test_intensity_falls_with_incidence_angle():
    cfg = _clean(np.linspace(-3, 3, 7), steps=2048)
    head_on = scan_lidar(make_box_scene(_one_car(x=10.0, yaw=0.0), ground=False), cfg, np.eye(4), 0)
    # The same car turned by 60 deg: the visible faces are hit at larger incidence angles on average.
    oblique = scan_lidar(make_box_scene(_one_car(x=10.0, yaw=np.deg2rad(60)), ground=False), cfg, np.eye(4), 0)
    assert head_on.points[:, 3].mean() > 1.15 * oblique.points[:, 3].mean()
    assert np.all((head_on.points[:, 3] > 0) & (head_on.points[:, 3] <= 1))


def test_noise_and_dropout_statistics():
    scene = make_box_scene(_one_car(x=22.0), ground=False)
    exact = scan_lidar(scene, _clean(np.linspace(-2, 2, 9), steps=4096), np.eye(4), 0)
    noisy = scan_lidar(scene, _clean(np.linspace(-2, 2, 9), steps=4096, range_noise_m=0.05), np.eye(4), 1)
    assert len(noisy) == len(exact)
    # Points stay on their rays; the true range puts x on the face x = 20, so error = r * (1 - 20 / x).
    err = np.linalg.norm(noisy.points[:, :3], axis=1) * (1 - 20.0 / noisy.points[:, 0])
    assert 0.045 < err.std() < 0.055 and abs(err.mean()) < 0.01
    dropped = scan_lidar(scene, _clean(np.linspace(-2, 2, 9), steps=4096, dropout=0.5), np.eye(4), 2)
    assert abs(len(dropped) / len(exact) - 0.5) < 0.03


def test_presets_have_real_beam_tables():
    spans = {"vlp16": (16, -15.0, 15.0), "vlp32c": (32, -25.0, 15.0), "hdl32": (32, -30.67, 10.67),
             "hdl64": (64, -24.33, 2.0), "os1_64": (64, -16.6, 16.6), "os1_128": (128, -22.5, 22.5)}
    for name, (n, lo, hi) in spans.items():
        cfg = lidar_preset(name)
        assert cfg.num_beams == n
        assert min(cfg.elevations_deg) == pytest.approx(lo, abs=1e-3)
        assert max(cfg.elevations_deg) == pytest.approx(hi, abs=1e-3)
    assert lidar_preset("hdl64").azimuth_steps == 2048
    with pytest.raises(LidarError, match="unknown LiDAR preset"):
        lidar_preset("hdl65")
    with pytest.raises(LidarError):
        LidarConfig(elevations_deg=())


def test_scans_carry_the_sensor_ring_order_and_intensity_unit():
    scene = make_scene(11)
    pose = scene.ego_pose(1.5)
    vlp = scan_lidar(scene, lidar_preset("vlp16"), pose, 4, t=1.5)         # Velodyne: one byte, ring 0 lowest
    assert vlp.points[:, 3].max() > 1 and vlp.points[:, 3].max() <= 255
    np.testing.assert_array_equal(vlp.points[:, 3], np.round(vlp.points[:, 3]))
    os1 = scan_lidar(scene, lidar_preset("os1_64"), pose, 4, t=1.5)        # Ouster: 16 bit, ring 0 highest
    assert 255 < os1.points[:, 3].max() <= 65535
    for scan, lowest in ((vlp, 0), (os1, 63)):
        elev = np.arcsin(scan.points[:, 2] / np.linalg.norm(scan.points[:, :3], axis=1))
        assert scan.ring[np.argmin(elev)] == lowest


def test_scan_is_deterministic_per_seed_and_scene():
    scene = make_scene(11)
    cfg = lidar_preset("vlp16")
    pose = scene.ego_pose(1.5)
    a, b = scan_lidar(scene, cfg, pose, 4, t=1.5), scan_lidar(make_scene(11), cfg, pose, 4, t=1.5)
    assert a.points.tobytes() == b.points.tobytes() and a.label.tobytes() == b.label.tobytes()
    c = scan_lidar(scene, cfg, pose, 5, t=1.5)
    assert a.points.tobytes() != c.points.tobytes()
    d = scan_lidar(make_scene(12), cfg, make_scene(12).ego_pose(1.5), 4, t=1.5)
    assert a.points.tobytes() != d.points.tobytes()


def test_street_scan_has_every_class_and_boxes_hold_their_points():
    scene = make_scene(3)
    scan = scan_lidar(scene, lidar_preset("hdl64"), scene.ego_pose(2.0), 0, t=2.0)
    present = set(np.unique(scan.label))
    for name in ("road", "sidewalk", "building", "vegetation", "pole", "car", "pedestrian"):
        assert SEMANTIC_ID[name] in present, name
    assert scan.points.dtype == np.float32 and scan.points.shape[1] == 4
    assert scan.ring.dtype == np.uint16 and scan.time.dtype == np.float32
    assert scan.time.min() >= 0 and scan.time.max() < 0.1
    inside = scan.boxes.contains(scan.points[:, :3], margin=0.1)
    for m, inst in enumerate(scan.boxes.ids):
        own = scan.instance == inst
        assert own.sum() == scan.box_points[m] and inside[own, m].all()


def test_moving_objects_follow_their_boxes():
    scene = make_scene(5)
    b0, b1 = scene.boxes_at(0.0), scene.boxes_at(1.0)
    moved = np.linalg.norm(b1.centers - b0.centers, axis=1)
    speeds = np.array([o.speed for o in scene.objects])
    np.testing.assert_allclose(moved, speeds, atol=1e-4)   # float32 centres
    assert (speeds > 0).any()
    with pytest.raises(SceneError, match="inconsistent shapes"):
        Boxes3D(b0.centers, b0.sizes, b0.yaw, b0.classes, b0.ids[:2])
    # Boxes re-expressed in a rotated, shifted frame keep their corners.
    t = pose_matrix(3.0, -2.0, 0.7)
    moved_boxes = b0.transform(t)
    corners = b0.corners() @ t[:3, :3].T + t[:3, 3]
    np.testing.assert_allclose(np.sort(moved_boxes.corners().reshape(-1, 3), axis=0),
                               np.sort(corners.reshape(-1, 3), axis=0), atol=1e-3)
