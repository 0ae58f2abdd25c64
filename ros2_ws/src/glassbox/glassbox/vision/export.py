"""ONNX export of the vision models with their named feature maps as extra outputs.

The exported graph returns the model's forward outputs followed by the chosen ``forward_features`` maps, so an
ONNX Runtime pipeline can build the same entropy profile as the torch pipeline's probes. Height and width are
dynamic axes; the batch size is fixed to the example's.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

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
    export_onnx(wrapper, tuple(t.detach().cpu() for t in example_inputs), path, input_names, names,
                dynamic_axes=dynamic, opset=opset)
    return {
        "inputs": {n: {"shape": list(t.shape), "dtype": "float32", "dynamic": ["height", "width"]}
                   for n, t in zip(input_names, example_inputs)},
        "outputs": list(output_names),
        "features": list(feature_names),
    }


@torch.no_grad()
def features_to_numpy(feats: dict[str, Tensor]) -> dict[str, object]:
    return {k: v.detach().cpu().numpy() for k, v in feats.items()}
