"""ONNX export of glassbox models and ONNX Runtime sessions.

Providers are named the way users think of them (``cpu``, ``cuda``, ``tensorrt``) and resolved in the order
given: the first available one runs, and every requested provider that is not available is reported with a
warning (never silently). ``OrtSession.providers`` says what actually runs.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

PROVIDER_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


class ProviderError(RuntimeError):
    """None of the requested execution providers is available."""


def resolve_providers(requested: Sequence[str], available: Sequence[str] | None = None,
                      allow_fallback_to_cpu: bool = True) -> tuple[list[str], list[str]]:
    """Map short names to ORT providers present in this build; return (providers, warnings)."""
    if available is None:
        import onnxruntime as ort
        available = ort.get_available_providers()
    providers, warnings = [], []
    for name in requested:
        if name not in PROVIDER_NAMES:
            raise ValueError(f"unknown execution provider '{name}' (known: {', '.join(PROVIDER_NAMES)})")
        full = PROVIDER_NAMES[name]
        if full in available:
            providers.append(full)
        else:
            warnings.append(f"execution provider '{name}' ({full}) is not available in this onnxruntime build "
                            f"(available: {', '.join(available)})")
    if not providers:
        if not allow_fallback_to_cpu:
            raise ProviderError("; ".join(warnings) or "no execution provider requested")
        warnings.append("FALLING BACK to CPUExecutionProvider: inference will be slow")
        providers = ["CPUExecutionProvider"]
    return providers, warnings


def export_onnx(model, example_inputs: tuple, path: str | Path, input_names: Sequence[str],
                output_names: Sequence[str], dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
                opset: int = 17) -> Path:
    """Export ``model`` (eval mode, CPU) to ONNX at ``path`` and check the file with the ONNX checker.

    The model's ``forward`` must return a tuple (or a single tensor) in the order of ``output_names``.
    The file is written to a temporary name first and renamed, so a crash never leaves a partial model.
    """
    import onnx
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            torch.onnx.export(model, tuple(example_inputs), str(tmp), input_names=list(input_names),
                              output_names=list(output_names), dynamic_axes=dict(dynamic_axes or {}),
                              opset_version=opset, do_constant_folding=True, dynamo=False)
    finally:
        model.train(was_training)
    onnx.checker.check_model(onnx.load(str(tmp)))
    os.replace(tmp, path)
    return path


class OrtSession:
    """An ONNX Runtime inference session with named inputs/outputs and reported providers."""

    def __init__(self, path: str | Path, providers: Sequence[str] = ("cpu",), intra_op_threads: int = 0,
                 allow_fallback_to_cpu: bool = True):
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}")
        resolved, self.warnings = resolve_providers(providers, allow_fallback_to_cpu=allow_fallback_to_cpu)
        for w in self.warnings:
            log.warning(w)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_threads:
            opts.intra_op_num_threads = intra_op_threads
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=resolved)
        self.providers: list[str] = self.session.get_providers()
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run on named float32 inputs; returns every output by name."""
        outs = self.session.run(self.output_names, {k: np.ascontiguousarray(v) for k, v in inputs.items()})
        return dict(zip(self.output_names, outs))
