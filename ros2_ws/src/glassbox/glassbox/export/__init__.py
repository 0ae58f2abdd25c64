"""Deployment: ONNX export of glassbox models with their feature maps as extra outputs (run by
``glassbox.runtime``)."""
from glassbox.export.entropy_graph import (ENTROPY_OUTPUTS, METADATA_KEY, EntropyGraphError, EntropyHead,
                                           check_graph_probe, graph_probe_params)
from glassbox.export.onnx import EntropyGraph, FeatureGraph, OnnxExportError, export_onnx, export_with_features

__all__ = ["ENTROPY_OUTPUTS", "METADATA_KEY", "EntropyGraph", "EntropyGraphError", "EntropyHead", "FeatureGraph",
           "OnnxExportError", "check_graph_probe", "export_onnx", "export_with_features", "graph_probe_params"]
