"""Evaluation metrics (numpy): 3D detection AP (KITTI-style), and the metrics of the other models."""
from glassbox.metrics.detection3d import KITTI_IOU_THRESHOLDS, average_precision_r40, evaluate_detections
from glassbox.metrics.detection2d import (COCO_IOU_THRESHOLDS, Detections2D, GroundTruth2D, box_iou,
                                          evaluate_detections_2d)
from glassbox.metrics.image_quality import psnr, ssim
from glassbox.metrics.segmentation import SegmentationMeter, confusion_matrix, iou_from_confusion, mean_iou
