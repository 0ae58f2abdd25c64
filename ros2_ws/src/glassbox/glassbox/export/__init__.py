"""Deployment: ONNX export and ONNX Runtime sessions with explicit provider selection and loud fallback."""
from glassbox.export.onnx import OrtSession, ProviderError, export_onnx, resolve_providers

__all__ = ["OrtSession", "ProviderError", "export_onnx", "resolve_providers"]
