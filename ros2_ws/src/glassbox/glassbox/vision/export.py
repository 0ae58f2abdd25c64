"""ONNX export of the vision models with their named feature maps as extra outputs, and the shared runner.

The exported graph returns the model's forward outputs followed by the chosen ``forward_features`` maps, so an
ONNX Runtime pipeline can build the same entropy profile as the torch pipeline's probes. Height and width are
dynamic axes; the batch size is fixed to the example's. ``ModelRunner`` runs a model with either backend for
the camera pipelines and returns the same named outputs and feature maps from both.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from glassbox.export import export_onnx


class _WithFeatures(nn.Module):
    def __init__(self, model: nn.Module, head_outputs: int, feature_names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.head_outputs = head_outputs
        self.feature_names = list(feature_names)

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        feats = self.model.forward_features(*inputs)
        out = self.model.forward_head(feats)
        outs = tuple(out) if isinstance(out, (tuple, list)) else (out,)
        return outs[: self.head_outputs] + tuple(feats[n] for n in self.feature_names)


def export_with_features(model: nn.Module, example_inputs: tuple[Tensor, ...], path: str | Path,
                         input_names: Sequence[str], output_names: Sequence[str],
                         feature_names: Sequence[str], opset: int = 17) -> dict:
    """Export ``model`` to ``path``; returns the input spec written into the model card."""
    wrapper = _WithFeatures(model, len(output_names), feature_names).eval()
    names = list(output_names) + list(feature_names)
    dynamic = {n: {2: "height", 3: "width"} for n in input_names}
    with torch.no_grad():
        example_out = wrapper(*example_inputs)
    for n, t in zip(names, example_out):     # every 4-D output gets its own symbolic spatial size
        if t.dim() == 4:
            dynamic[n] = {2: f"{n}_height", 3: f"{n}_width"}
    export_onnx(wrapper, tuple(t.detach().cpu() for t in example_inputs), path, input_names, names,
                dynamic_axes=dynamic, opset=opset)
    return {
        "inputs": {n: {"shape": list(t.shape), "dtype": "float32", "dynamic": ["height", "width"]}
                   for n, t in zip(input_names, example_inputs)},
        "outputs": list(output_names),
        "features": list(feature_names),
    }


class BackendError(RuntimeError):
    """A vision pipeline backend cannot be built (unknown backend, wrong model file, missing outputs)."""


def load_state(path: str | Path) -> tuple[dict, dict[str, Tensor]]:
    """(config dict, state dict) from a ``.pt`` file written by the camera tasks (or a bare state dict)."""
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        return dict(state.get("config", {})), state["state_dict"]
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        return {}, state["model"]
    if not isinstance(state, dict):
        raise BackendError(f"{path}: expected a state dict, got {type(state).__name__}")
    return {}, state


class ModelRunner:
    """Runs a vision model on numpy inputs with eager PyTorch or ONNX Runtime; same outputs from both.

    ``run(*inputs) -> (outputs, features)``: ``outputs`` maps ``output_names`` to numpy arrays (batch kept);
    ``features`` maps feature names to tensors (torch) or arrays (ORT), for entropy profiles.
    """

    def __init__(self, backend: str, model: nn.Module | None, model_path: str, input_names: Sequence[str],
                 output_names: Sequence[str], providers: Sequence[str] = ("cpu",), device: str = "cpu",
                 threads: int = 0) -> None:
        self.backend, self.device = backend, device
        self.input_names, self.output_names = list(input_names), list(output_names)
        self.model, self.session = None, None
        if backend == "torch":
            if model is None:
                raise BackendError("the torch backend needs a model")
            if model_path:
                if not str(model_path).endswith(".pt"):
                    raise BackendError(f"the torch backend loads a .pt file, got {model_path}")
                model.load_state_dict(load_state(model_path)[1])
            self.model = model.eval().to(device)
        elif backend == "onnxruntime":
            from glassbox.export import OrtSession

            if not str(model_path).endswith(".onnx"):
                raise BackendError(f"the onnxruntime backend needs an .onnx model_path, got {model_path!r}")
            self.session = OrtSession(model_path, providers=providers, intra_op_threads=threads)
            missing = [n for n in self.output_names if n not in self.session.output_names]
            if missing:
                raise BackendError(f"{model_path}: graph lacks output '{missing[0]}'")
        else:
            raise BackendError(f"unknown backend '{backend}' (known: torch, onnxruntime)")

    def run(self, *inputs: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, object]]:
        if self.session is not None:
            out = self.session.run({n: x.astype(np.float32, copy=False) for n, x in zip(self.input_names, inputs)})
            return ({k: out[k] for k in self.output_names},
                    {k: v for k, v in out.items() if k not in self.output_names})
        with torch.no_grad():
            ts = [torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device) for x in inputs]
            feats = self.model.forward_features(*ts)
            out = self.model.forward_head(feats)
        outs = tuple(out) if isinstance(out, (tuple, list)) else (out,)
        return {k: v.cpu().numpy() for k, v in zip(self.output_names, outs)}, feats


def entropy_profile(feats: dict, layers: Sequence[str], probe, frame: int, model_name: str):
    """The entropy profile of ``layers`` (all features when empty), or None when this frame is not probed."""
    from glassbox.entropy import profile_from_features

    if not probe.enabled or frame % probe.every_n:
        return None
    names = list(layers) or list(feats)
    missing = [n for n in names if n not in feats]
    if missing:
        raise BackendError(f"probe layer '{missing[0]}' is not a feature map (have: {', '.join(feats)})")
    return profile_from_features({n: feats[n] for n in names}, probe, model_name=model_name)


def card_model_path(card_path: str | Path, backend: str):
    """(card, verified model path) for ``backend``: the card's ONNX file for onnxruntime, its ``.pt`` weights
    file for torch; both are checked against the sha256 recorded in the card."""
    from glassbox.models.card import load_card, verify_model_file, verify_weights_file

    card_path = Path(card_path)
    card = load_card(card_path)
    if backend == "onnxruntime":
        return card, verify_model_file(card, card_path.parent / card.file)
    if not card.weights_file:
        raise BackendError(f"{card_path}: card names no .pt weights file for the torch backend")
    return card, verify_weights_file(card, card_path.parent / card.weights_file)
