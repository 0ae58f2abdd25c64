"""Inference runtime: eager PyTorch and ONNX Runtime behind one interface (``open_backend``), execution
providers with loud fallback and their Jetson options (TensorRT fp16 and engine cache, CUDA device)."""
from glassbox.runtime.backends import (BACKENDS, Backend, BackendError, GraphEntropy, Inference, OrtBackend,
                                       RuntimeConfig, TorchBackend, load_state, open_backend)
from glassbox.runtime.providers import (PROVIDER_NAMES, CudaOptions, ProviderError, ProviderOptions,
                                        TensorRTOptions, session_providers)

__all__ = ["BACKENDS", "PROVIDER_NAMES", "Backend", "BackendError", "CudaOptions", "GraphEntropy", "Inference", "OrtBackend",
           "ProviderError", "ProviderOptions", "RuntimeConfig", "TensorRTOptions", "TorchBackend", "load_state",
           "open_backend", "session_providers"]
