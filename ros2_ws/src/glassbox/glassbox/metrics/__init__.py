"""Evaluation metrics (numpy): 3D detection AP (KITTI-style), and the metrics of the other models."""
from glassbox.metrics.detection3d import KITTI_IOU_THRESHOLDS, average_precision_r40, evaluate_detections
