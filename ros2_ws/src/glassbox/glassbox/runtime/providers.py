"""ONNX Runtime execution providers: short names, Jetson-oriented options, and resolution with loud fallback.

Providers are named the way users think of them (``cpu``, ``cuda``, ``tensorrt``) and resolved in the order
given: every requested provider that this onnxruntime build lacks is reported with a warning (never silently),
and when none is left the session falls back to the CPU (or raises, if fallback is not allowed). The options of
the TensorRT and CUDA providers are config fields; they reach ``InferenceSession`` only when that provider is
requested and available, as ``(name, options)`` pairs (the form ``onnxruntime`` documents).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

PROVIDER_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


class ProviderError(RuntimeError):
    """None of the requested execution providers is available and CPU fallback is not allowed."""


@dataclass(frozen=True)
class TensorRTOptions:
    """TensorRT execution provider. Engines are built on the first run of each input shape (minutes on a
    Jetson), so they are cached on disk by default; fp16 roughly halves latency on Orin-class GPUs."""

    fp16: bool = True
    engine_cache: bool = True
    cache_dir: str = "~/.cache/glassbox/trt"
    device_id: int = 0
    max_workspace_bytes: int = 1 << 30

    def provider_options(self) -> dict[str, object]:
        opts: dict[str, object] = {"device_id": self.device_id, "trt_max_workspace_size": self.max_workspace_bytes,
                                   "trt_fp16_enable": self.fp16, "trt_engine_cache_enable": self.engine_cache}
        if self.engine_cache:
            opts["trt_engine_cache_path"] = os.path.expanduser(self.cache_dir)
        return opts


@dataclass(frozen=True)
class CudaOptions:
    """CUDA execution provider."""

    device_id: int = 0

    def provider_options(self) -> dict[str, object]:
        return {"device_id": self.device_id}


@dataclass(frozen=True)
class ProviderOptions:
    """Options of the providers that take any (each applies only when its provider is requested)."""

    tensorrt: TensorRTOptions = field(default_factory=TensorRTOptions)
    cuda: CudaOptions = field(default_factory=CudaOptions)

    def for_provider(self, name: str) -> dict[str, object]:
        return {"tensorrt": self.tensorrt.provider_options, "cuda": self.cuda.provider_options}.get(
            name, dict)()


def available_providers() -> list[str]:
    import onnxruntime as ort
    return list(ort.get_available_providers())


def session_providers(requested: Sequence[str], options: ProviderOptions = ProviderOptions(),
                      available: Sequence[str] | None = None, allow_fallback_to_cpu: bool = True
                      ) -> tuple[list[tuple[str, dict[str, object]]], list[str]]:
    """``(providers, warnings)``: the ``(ORT provider name, options)`` pairs to pass to ``InferenceSession``, in
    the requested order, and one warning per requested provider that is not available (plus the fallback)."""
    available = available_providers() if available is None else list(available)
    providers, warnings = [], []
    for name in requested:
        if name not in PROVIDER_NAMES:
            raise ValueError(f"unknown execution provider '{name}' (known: {', '.join(PROVIDER_NAMES)})")
        full = PROVIDER_NAMES[name]
        if full in available:
            providers.append((full, options.for_provider(name)))
        else:
            warnings.append(f"execution provider '{name}' ({full}) is not available in this onnxruntime build "
                            f"(available: {', '.join(available)})")
    if not providers:
        if not allow_fallback_to_cpu:
            raise ProviderError("; ".join(warnings) or "no execution provider requested")
        warnings.append("FALLING BACK to CPUExecutionProvider: inference will be slow")
        providers = [("CPUExecutionProvider", {})]
    return providers, warnings
