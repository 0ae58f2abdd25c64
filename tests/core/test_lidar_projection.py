"""Spherical projection: known angles land on known pixels, closest wins, round trips, ring rows, drop counts."""
import math

import numpy as np
import pytest

from glassbox.lidar import ProjectionConfig, ProjectionError, normalise, pixel_of, project_points, unproject


def _point(elev_deg: float, azim_deg: float, r: float) -> np.ndarray:
    e, a = math.radians(elev_deg), math.radians(azim_deg)
    return np.array([r * math.cos(e) * math.cos(a), r * math.cos(e) * math.sin(a), r * math.sin(e)])


CFG = ProjectionConfig(height=16, width=360, fov_up_deg=8.0, fov_down_deg=-8.0)  # 1 degree rows and columns


def test_point_at_cell_centre_lands_on_that_pixel():
    cfg = CFG
    # every (row, col) pair on a coarse grid: put a point at the cell-centre angles
    rows, cols = np.meshgrid(np.arange(0, 16, 3), np.arange(0, 360, 37), indexing="ij")
    elev = cfg.fov_up_deg - (rows + 0.5) * 1.0                       # 1 degree per row
    azim = 180.0 - (cols + 0.5) * 1.0                                 # column 0 starts at +180 degrees
    pts = np.stack([_point(e, a, 10.0 + i) for i, (e, a) in enumerate(zip(elev.ravel(), azim.ravel()))])
    img = project_points(pts, cfg)
    assert img.mask.sum() == len(pts)
    got = img.point_index[rows.ravel(), cols.ravel()]
    np.testing.assert_array_equal(got, np.arange(len(pts)))
    # forward (azimuth 0) is column W / 2, left (+90 degrees) is W / 4
    img = project_points(np.stack([_point(0.5, 0.5, 5.0), _point(0.5, 89.5, 5.0)]), cfg)
    assert img.point_index[7, 179] == 0 and img.point_index[7, 90] == 1
    # front and back never alias (the arcsin azimuth of the seed's Eq. 80 would fold them)
    img = project_points(np.stack([_point(0.5, 30.5, 5.0), _point(0.5, 149.5, 5.0)]), cfg)
    assert img.mask.sum() == 2


def test_row_bands_and_field_of_view_edges():
    cfg = CFG
    # rows are 1-degree bands below fov_up: just above / below the 4-degree edge go to rows 3 / 4
    pts = np.stack([_point(4.0 + 1e-3, 0.5, 7.0), _point(4.0 - 1e-3, 10.5, 7.0),
                    _point(8.0 - 1e-3, 20.5, 7.0), _point(-8.0 + 1e-3, 30.5, 7.0),
                    _point(8.0 + 1e-3, 40.5, 7.0), _point(-8.0 - 1e-3, 50.5, 7.0)])
    img = project_points(pts, cfg)
    got = {int(i): (int(r), int(c)) for (r, c), i in zip(np.argwhere(img.mask), img.point_index[img.mask])}
    assert got == {0: (3, 179), 1: (4, 169), 2: (0, 159), 3: (15, 149)}
    assert img.dropped["out_of_fov"] == 2


def test_closest_point_wins_the_pixel():
    cfg = CFG
    rng = np.random.default_rng(0)
    ranges = rng.permutation(np.array([30.0, 12.5, 12.7, 50.0, 20.0]))
    pts = np.stack([_point(2.5, 40.5, r) for r in ranges])
    pts = np.concatenate([pts, _point(-3.5, -100.5, 9.0)[None]])
    pts4 = np.concatenate([pts, np.arange(len(pts))[:, None] / 10.0], axis=1)
    img = project_points(pts4, cfg)
    row, col = 5, 139
    winner = int(np.argmin(ranges))
    assert img.point_index[row, col] == winner
    assert img.range[row, col] == pytest.approx(12.5, rel=1e-6)
    np.testing.assert_array_equal(img.xyz[row, col], pts4[winner, :3].astype(np.float32))
    assert img.intensity[row, col] == np.float32(pts4[winner, 3])
    assert img.occluded == 4 and img.mask.sum() == 2


def test_unproject_recovers_points_within_quantisation():
    cfg = ProjectionConfig(height=32, width=512, fov_up_deg=10.0, fov_down_deg=-20.0)
    rng = np.random.default_rng(1)
    n = 5000
    elev = rng.uniform(-19.9, 9.9, n)
    azim = rng.uniform(-180, 180, n)
    r = rng.uniform(1.0, 80.0, n)
    e, a = np.radians(elev), np.radians(azim)
    pts = np.stack([r * np.cos(e) * np.cos(a), r * np.cos(e) * np.sin(a), r * np.sin(e)], 1)
    img = project_points(pts, cfg)
    rec = unproject(img)
    kept = img.point_index[img.mask]                                  # same row-major pixel order as unproject
    assert len(kept) == img.mask.sum() > 0.8 * n
    err = np.linalg.norm(rec - pts[kept], axis=1)
    d_theta = math.radians(30.0 / 32)
    d_phi = 2 * math.pi / 512
    bound = r[kept] * math.sqrt((d_theta / 2) ** 2 + (d_phi / 2) ** 2) * 1.01 + 1e-4
    assert np.all(err <= bound)
    # and the stored xyz is the input point exactly; range = its norm
    np.testing.assert_array_equal(img.xyz[img.mask], pts[kept].astype(np.float32))
    np.testing.assert_allclose(img.range[img.mask], np.linalg.norm(pts[kept], axis=1), rtol=1e-6)


def test_ring_field_sets_the_row():
    cfg = ProjectionConfig(height=16, width=1024, fov_up_deg=15.0, fov_down_deg=-15.0)
    beams = np.linspace(15.0, -15.0, 16)                              # VLP-16 style, top beam first
    ring = np.repeat(np.arange(16), 200)
    azim = np.tile(np.linspace(-179.0, 179.0, 200), 16)
    elev = beams[ring] + np.random.default_rng(2).normal(0, 0.3, ring.size)  # jittered around each beam
    e, a = np.radians(elev), np.radians(azim)
    pts = np.stack([10 * np.cos(e) * np.cos(a), 10 * np.cos(e) * np.sin(a), 10 * np.sin(e)], 1)
    img = project_points(pts, cfg, ring=ring)
    rows = np.nonzero(img.mask)[0]
    np.testing.assert_array_equal(rows, ring[img.point_index[img.mask]])
    assert img.mask.sum() == ring.size
    # bottom-first numbering (the Velodyne driver convention) flips the rows
    flipped = project_points(pts, ProjectionConfig(height=16, width=1024, ring_order="bottom_first"), ring=ring)
    np.testing.assert_array_equal(np.nonzero(flipped.mask)[0], 15 - ring[flipped.point_index[flipped.mask]])


def test_beam_table_rows():
    beams = (2.0, 0.0, -3.0, -8.0)
    cfg = ProjectionConfig(height=4, width=64, beam_elevations_deg=beams)
    elev = [2.9, 1.1, 0.9, -1.4, -1.6, -5.4, -5.6, -10.4, 3.1, -10.6]
    want = [0, 0, 1, 1, 2, 2, 3, 3, -1, -1]                            # edges 3, 1, -1.5, -5.5, -10.5
    pts = np.stack([_point(e, 0.1 + 10.0 * i, 10.0) for i, e in enumerate(elev)])
    img = project_points(pts, cfg)
    got = np.full(len(pts), -1)
    got[img.point_index[img.mask]] = np.nonzero(img.mask)[0]
    np.testing.assert_array_equal(got, want)
    assert img.dropped["out_of_fov"] == 2
    row, _, inside = pixel_of(np.stack([_point(b, 0.1, 10.0) for b in beams]), cfg)
    np.testing.assert_allclose(row, np.arange(4) + 0.5)
    assert inside.all()


def test_drop_counts_are_exact():
    cfg = CFG
    rng = np.random.default_rng(3)
    good = np.stack([_point(e, a, 20.0) for e, a in zip(rng.uniform(-7, 7, 50), np.linspace(-170, 170, 50))])
    nan = good[:7].copy()
    nan[:, rng.integers(0, 3, 7)] = np.nan
    inf = good[:3].copy()
    inf[:, 2] = np.inf
    zero = np.zeros((5, 3))
    above = np.stack([_point(20.0, a, 5.0) for a in range(11)])
    below = np.stack([_point(-30.0, a, 5.0) for a in range(4)])
    far = np.stack([_point(0.5, a, 500.0) for a in range(2)])
    pts = np.concatenate([good, nan, inf, zero, above, below, far])
    img = project_points(rng.permutation(pts), cfg)
    assert img.dropped == {"nonfinite": 10, "zero_range": 5, "beyond_range": 2, "out_of_fov": 15}
    assert img.mask.sum() == 50 and img.occluded == 0


def test_channels_and_normalisation():
    cfg = ProjectionConfig(height=16, width=360, fov_up_deg=8.0, fov_down_deg=-8.0,
                           channels=("range", "z", "mask"), mean=(10.0, 0.0, 0.0), std=(5.0, 2.0, 1.0))
    p = np.array([[*_point(0.5, 0.5, 20.0), 0.7]])
    img = project_points(p, cfg)
    x = normalise(img)
    assert x.shape == (3, 16, 360) and x.dtype == np.float32
    assert x[0, 7, 179] == pytest.approx((20.0 - 10.0) / 5.0, rel=1e-6)
    assert x[2, 7, 179] == 1.0 and x[2].sum() == 1.0
    assert x[0, 0, 0] == pytest.approx(-2.0)                          # empty: raw 0, normalised


def test_bad_inputs_raise():
    with pytest.raises(ProjectionError):
        ProjectionConfig(fov_up_deg=-5.0, fov_down_deg=3.0)
    with pytest.raises(ProjectionError):
        ProjectionConfig(channels=("range", "colour"), mean=(0, 0), std=(1, 1))
    with pytest.raises(ProjectionError):
        project_points(np.zeros((4, 2)), CFG)
    with pytest.raises(ProjectionError):
        project_points(np.ones((4, 3)), CFG, ring=np.zeros(3))
