"""Bags written by the tests themselves, with rosbags and the project's message codecs."""
from __future__ import annotations

from pathlib import Path

import numpy as np


#: the camera_info of the bag's RGB camera: calibrated at 640x512, published 2x2-binned (the 320x256 images)
RGB_K_FULL = np.array([[540.0, 0.0, 322.0], [0.0, 536.0, 254.0], [0.0, 0.0, 1.0]])


def write_unusual_bag(path: Path, storage: str = "sqlite3", frames: int = 3, empty_topic: bool = False,
                      with_gt: bool = False, camera_info: bool = False) -> dict[str, list[int]]:
    """A bag with driver-like topic names: a VLP-16 cloud with ring, float64 time and reflectivity fields, a bgr8
    camera and a mono16 thermal camera 30 ms behind it; with ``camera_info`` the RGB camera's CameraInfo beside
    its image topic, just before each image (full-resolution K, binning 2). Returns the header stamps per input
    topic."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    from glassbox import msg as mc
    from glassbox.bag.typestore import make_typestore
    from glassbox.sim import (SceneConfig, lidar_preset, make_scene, render_cameras, render_thermal, rgb_camera,
                              scan_lidar, thermal_camera)

    ts = make_typestore()
    f = mc.RosbagsFactory(ts)
    scene = make_scene(11, SceneConfig())
    topics = {"lidar": ("/velodyne_points", "sensor_msgs/msg/PointCloud2"),
              "rgb": ("/cam/front/image_color", "sensor_msgs/msg/Image"),
              "thermal": ("/flir/image_raw", "sensor_msgs/msg/Image")}
    stamps: dict[str, list[int]] = {k: [] for k in topics}
    plugin = StoragePlugin.SQLITE3 if storage == "sqlite3" else StoragePlugin.MCAP
    with Writer(path, version=8, storage_plugin=plugin) as w:
        conns = {k: w.add_connection(t, typ, typestore=ts) for k, (t, typ) in topics.items()}
        if empty_topic:
            w.add_connection("/unused/points", "sensor_msgs/msg/PointCloud2", typestore=ts)
        if with_gt:
            conns["gt_rgb"] = w.add_connection("/truth/rgb/detections", "vision_msgs/msg/Detection2DArray", typestore=ts)
        if camera_info:
            conns["rgb_info"] = w.add_connection("/cam/front/camera_info", "sensor_msgs/msg/CameraInfo", typestore=ts)
        for i in range(frames):
            t0 = 1_000_000_000 * (100 + i)
            pose = scene.ego_pose(0.1 * i)
            scan = scan_lidar(scene, lidar_preset("vlp16"), pose, seed=i)
            cloud = mc.xyz_to_structured(scan.points, extra={
                "ring": scan.ring.astype(np.uint16), "time": scan.time.astype(np.float64),
                "reflectivity": (scan.points[:, 3] * 100 / 255).astype(np.uint16)})
            cam = render_cameras(scene, rgb_camera(width=320, height=256), None, pose, "day", i, t=0.1 * i)
            th = render_thermal(scene, thermal_camera(width=320, height=256), pose, "day", i, t=0.1 * i)
            msgs = {"lidar": (t0, mc.make_pointcloud2(f, cloud, mc.make_header(f, t0, "velodyne"))),
                    "rgb": (t0 + 10_000_000, mc.make_image(f, np.ascontiguousarray(cam.rgb[:, :, ::-1]), "bgr8",
                                                           mc.make_header(f, t0 + 10_000_000, "camera"))),
                    "thermal": (t0 + 40_000_000, mc.make_image(f, th.thermal16, "mono16",
                                                               mc.make_header(f, t0 + 40_000_000, "flir")))}
            if with_gt:
                dets = mc.Detections2D(cam.boxes2d.astype(np.float64),
                                       [["car", "pedestrian", "cyclist"][int(c)] for c in cam.box_classes],
                                       np.ones(len(cam.box_classes)))
                msgs["gt_rgb"] = (t0 + 10_000_000, mc.make_detection2d_array(
                    f, dets, mc.make_header(f, t0 + 10_000_000, "camera")))
            if camera_info:
                from glassbox.calibration import pinhole
                info = mc.make_camera_info(f, pinhole(RGB_K_FULL, 640, 512), mc.make_header(f, t0 + 10_000_000,
                                                                                               "camera"))
                info.binning_x = info.binning_y = 2
                msgs = {"rgb_info": (t0 + 9_000_000, info), **msgs}
            for key, (stamp, msg) in msgs.items():
                w.write(conns[key], stamp, ts.serialize_cdr(msg, conns[key].msgtype))
                if key in stamps:
                    stamps[key].append(stamp)
    return stamps
