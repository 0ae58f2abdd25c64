"""Real-data layouts: each writer's output is read back unchanged by its reader; KITTI labels parse with an
independent minimal parser; labels converted back to the LiDAR frame match the simulator's boxes."""
import json

import cv2
import numpy as np
import pytest

from glassbox.classes import DETECTION_CLASSES
from glassbox.datasets import (CameraDatasetConfig, CocoRgbtDataset, CocoRgbtWriter, DatasetError, KittiDataset,
                               SegmentationPngDataset, export_synthetic, format_kitti_label, kitti_to_boxes3d,
                               read_coco_rgbt, read_kitti_calib, read_kitti_label, read_label_png, read_velodyne,
                               write_kitti_frame, write_label_png)
from glassbox.sim import lidar_preset, make_scene, render_cameras, rgb_camera, scan_lidar


@pytest.fixture(scope="module")
def frame():
    scene = make_scene(8)
    pose = scene.ego_pose(1.0)
    scan = scan_lidar(scene, lidar_preset("vlp16"), pose, 0, t=1.0)
    cam = render_cameras(scene, rgb_camera(width=320, height=256), None, pose, "day", 0, t=1.0)
    return scan, cam


def _minimal_kitti_parse(text):
    out = []
    for line in text.strip().splitlines():
        f = line.split()
        out.append({"type": f[0], "bbox": [float(v) for v in f[4:8]], "hwl": [float(v) for v in f[8:11]],
                    "xyz": [float(v) for v in f[11:14]], "ry": float(f[14])})
    return out


def test_kitti_round_trip(tmp_path, frame):
    scan, cam = frame
    write_kitti_frame(tmp_path, 0, scan, cam)
    base = tmp_path / "training"
    assert read_velodyne(base / "velodyne/000000.bin").tobytes() == scan.points.tobytes()
    img = cv2.imread(str(base / "image_2/000000.png"))[..., ::-1]
    np.testing.assert_array_equal(img, cam.rgb)
    text = (base / "label_2/000000.txt").read_text()
    objs = read_kitti_label(base / "label_2/000000.txt")
    assert format_kitti_label(objs) == text                       # reader + writer: unchanged
    simple = _minimal_kitti_parse(text)
    assert len(simple) == len(objs) == len(cam.boxes2d) > 0
    names = {"Car": 0, "Pedestrian": 1, "Cyclist": 2}
    assert [names[o["type"]] for o in simple] == list(cam.box_classes)
    np.testing.assert_allclose([o["bbox"] for o in simple], cam.boxes2d, atol=0.006)
    np.testing.assert_allclose([o["hwl"] for o in simple], cam.boxes3d.sizes[:, ::-1], atol=0.006)
    calib = read_kitti_calib(base / "calib/000000.txt")
    np.testing.assert_allclose(calib["P2"][:, :3], cam.K_rgb, rtol=1e-10)
    # Back to the LiDAR frame: the boxes the simulator put in the camera frame, to label precision.
    boxes = kitti_to_boxes3d(objs, calib)
    base_T_lidar = np.linalg.inv(cam.world_T_base) @ scan.world_T_lidar
    truth = cam.boxes3d.transform(np.linalg.inv(base_T_lidar))
    np.testing.assert_allclose(boxes.centers, truth.centers, atol=0.01)
    np.testing.assert_allclose(boxes.sizes, truth.sizes, atol=0.006)
    dyaw = (boxes.yaw - truth.yaw + np.pi) % (2 * np.pi) - np.pi
    assert np.abs(dyaw).max() < 0.006
    # Independent KITTI convention for this rig (camera axes: x = -y_lidar, y = -z_lidar, z = x_lidar; the camera
    # sits 0.27 m ahead of and 0.08 m below the LiDAR): bottom-centre location and rotation_y = -yaw - pi/2.
    c = truth.centers.astype(np.float64)
    h = truth.sizes[:, 2].astype(np.float64)
    loc = np.stack([-c[:, 1], -(c[:, 2] + 0.08) + h / 2, c[:, 0] - 0.27], 1)
    np.testing.assert_allclose([o["xyz"] for o in simple], loc, atol=0.006)
    ry = (-truth.yaw.astype(np.float64) - np.pi / 2 + np.pi) % (2 * np.pi) - np.pi
    dry = (np.array([o["ry"] for o in simple]) - ry + np.pi) % (2 * np.pi) - np.pi
    assert np.abs(dry).max() < 0.006
    # Bottom centres project near the bottom edge of the 2D boxes of unoccluded, untruncated objects.
    p2 = calib["P2"]
    for o, occ, trunc, b in zip(simple, cam.box_occlusion, cam.box_truncation, cam.boxes2d):
        if occ < 0.05 and trunc == 0 and o["xyz"][2] > 5:
            uvw = p2 @ np.array([*o["xyz"], 1.0])
            assert b[0] - 1 <= uvw[0] / uvw[2] <= b[2] + 1


def test_kitti_dataset_reads_the_export(tmp_path):
    export_synthetic(tmp_path, "kitti", 2, split="val", lidar="vlp16",
                     cameras=CameraDatasetConfig(
                         rgb=rgb_camera(width=160, height=128), thermal=None))
    export_synthetic(tmp_path, "kitti", 1, split="train", lidar="vlp16",
                     cameras=CameraDatasetConfig(rgb=rgb_camera(width=160, height=128), thermal=None))
    ds = KittiDataset(tmp_path, "val", with_image=True)
    assert len(ds) == 2 and ds.names == ["100000", "100001"]
    assert KittiDataset(tmp_path, "train").names == ["000000"]
    assert len(list((tmp_path / "training/velodyne").glob("*.bin"))) == 3
    item = ds[0]
    assert item["points"].shape[1] == 4 and item["boxes"].shape[1] == 7 and item["rgb"].shape == (3, 128, 160)
    assert len(item["boxes2d"]) == len(item["boxes"])
    with pytest.raises(DatasetError):
        KittiDataset(tmp_path / "nothing")


def test_kitti_reader_rejects_bad_lines(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_text("Car 0.00 0 1.0 1 2 3\n")
    with pytest.raises(DatasetError, match="15 or 16 fields"):
        read_kitti_label(p)


def test_coco_rgbt_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    w = CocoRgbtWriter(tmp_path, "train")
    rgbs, ths, boxes, classes = [], [], [], []
    for i in range(3):
        rgb = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
        th = rng.integers(0, 256, (64, 80), dtype=np.uint8)
        xy = rng.uniform(0, 40, (i + 1, 2))
        b = np.concatenate([xy, xy + rng.uniform(1, 20, (i + 1, 2))], 1).astype(np.float32)
        c = rng.integers(0, 3, i + 1)
        w.add(f"{i:06d}", rgb, th, b, c, lighting="day")
        rgbs.append(rgb), ths.append(th), boxes.append(b), classes.append(c)
    w.close()
    recs = read_coco_rgbt(tmp_path, "train")
    assert [r["image"]["lighting"] for r in recs] == ["day"] * 3
    for r, b, c in zip(recs, boxes, classes):
        np.testing.assert_allclose(r["boxes"], b, atol=1e-4)
        np.testing.assert_array_equal(r["labels"], c)
    ds = CocoRgbtDataset(tmp_path, "train")
    item = ds[2]
    np.testing.assert_array_equal(item["rgb"].numpy().transpose(1, 2, 0), rgbs[2])
    np.testing.assert_array_equal(item["thermal"].numpy()[0], ths[2])
    doc = json.loads((tmp_path / "annotations/train.json").read_text())
    assert [c["name"] for c in doc["categories"]] == list(DETECTION_CLASSES)


def test_coco_reader_maps_real_dataset_category_names(tmp_path):
    (tmp_path / "annotations").mkdir()
    doc = {"images": [{"id": 5, "file_name": "a.png", "width": 10, "height": 10}],
           "annotations": [{"id": 1, "image_id": 5, "category_id": 1, "bbox": [1, 2, 3, 4], "iscrowd": 0},
                           {"id": 2, "image_id": 5, "category_id": 3, "bbox": [0, 0, 2, 2], "iscrowd": 0},
                           {"id": 3, "image_id": 5, "category_id": 9, "bbox": [0, 0, 2, 2], "iscrowd": 0}],
           "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "bike"}, {"id": 9, "name": "dog"}]}
    (tmp_path / "annotations/val.json").write_text(json.dumps(doc))
    rec = read_coco_rgbt(tmp_path, "val")[0]
    np.testing.assert_array_equal(rec["labels"], [1, 2])
    np.testing.assert_allclose(rec["boxes"][0], [1, 2, 4, 6])


def test_label_png_round_trip_and_dataset(tmp_path):
    label = np.random.default_rng(1).integers(0, 9, (30, 40), dtype=np.uint8)
    label[0, 0] = 255
    write_label_png(tmp_path / "l.png", label)
    np.testing.assert_array_equal(read_label_png(tmp_path / "l.png"), label)
    with pytest.raises(DatasetError):
        write_label_png(tmp_path / "x.png", label.astype(np.int32))
    export_synthetic(tmp_path / "seg", "segmentation", 2, split="train",
                     cameras=CameraDatasetConfig(
                         rgb=rgb_camera(width=96, height=64), thermal=None))
    ds = SegmentationPngDataset(tmp_path / "seg", "train")
    binary = SegmentationPngDataset(tmp_path / "seg", "train", binary=True)
    assert len(ds) == 2 and ds[0]["image"].shape == (3, 64, 96)
    lab, bl = ds[0]["label"].numpy(), binary[0]["label"].numpy()
    np.testing.assert_array_equal(bl, np.isin(lab, (1, 2)).astype(np.int64))


def test_export_files_do_not_depend_on_the_workers(tmp_path):
    cams = CameraDatasetConfig(rgb=rgb_camera(width=64, height=48), thermal=None)
    for workers in (1, 2):
        export_synthetic(tmp_path / str(workers), "segmentation", 3, split="val", cameras=cams, workers=workers)
    files = sorted(p.relative_to(tmp_path / "1") for p in (tmp_path / "1").rglob("*") if p.is_file())
    assert len(files) >= 6
    for f in files:
        assert (tmp_path / "1" / f).read_bytes() == (tmp_path / "2" / f).read_bytes(), f
    with pytest.raises(DatasetError, match="workers"):
        export_synthetic(tmp_path / "x", "segmentation", 1, workers=-1)
