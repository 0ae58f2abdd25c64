"""Deployment: ONNX export of glassbox models with their feature maps as extra outputs (run by
``glassbox.runtime``)."""
from glassbox.export.onnx import FeatureGraph, OnnxExportError, export_onnx, export_with_features

__all__ = ["FeatureGraph", "OnnxExportError", "export_onnx", "export_with_features"]
