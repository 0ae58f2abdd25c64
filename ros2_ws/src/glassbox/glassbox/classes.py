"""Class tables shared by the synthetic world, the datasets, the models and the ROS messages.

Semantic ids are what label images (mono8) carry; detection ids index the detectors' class channels. The
string names are the ``class_id`` values written into vision_msgs ``ObjectHypothesis`` messages.
"""
from __future__ import annotations

# Semantic segmentation classes (label PNGs, per-point LiDAR labels, segmentation model outputs).
SEMANTIC_CLASSES: tuple[str, ...] = (
    "unlabeled",   # 0: sky, beyond range, no return
    "road",        # 1
    "sidewalk",    # 2
    "building",    # 3
    "vegetation",  # 4
    "pole",        # 5
    "car",         # 6
    "pedestrian",  # 7
    "cyclist",     # 8
)
SEMANTIC_ID = {name: i for i, name in enumerate(SEMANTIC_CLASSES)}

# Object classes of the 3D (LiDAR) and 2D (RGB-thermal) detectors.
DETECTION_CLASSES: tuple[str, ...] = ("car", "pedestrian", "cyclist")
DETECTION_ID = {name: i for i, name in enumerate(DETECTION_CLASSES)}

# Binary segmentation (the seed's traversable-vs-not setting): road and sidewalk are "traversable".
BINARY_CLASSES: tuple[str, ...] = ("background", "traversable")
TRAVERSABLE_SEMANTIC_IDS: tuple[int, ...] = (SEMANTIC_ID["road"], SEMANTIC_ID["sidewalk"])

# Display colours (RGB) for overlays, one per semantic class.
SEMANTIC_COLORS_RGB: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0), (128, 64, 128), (244, 35, 232), (70, 70, 70), (107, 142, 35),
    (153, 153, 153), (0, 0, 142), (220, 20, 60), (119, 11, 32),
)
