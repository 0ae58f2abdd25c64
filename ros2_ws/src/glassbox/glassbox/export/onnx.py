"""ONNX export of glassbox models, with their named feature maps as extra graph outputs.

``export_with_features`` is the one export path of every model (LiDAR and camera pipelines' tests, the trainer's
tasks): the graph returns the fields of the model's head (``glassbox.heads``, whose names become the output
names) followed by the chosen ``forward_features`` maps, so that the ONNX Runtime backend of a pipeline builds
the same entropy profile as the torch backend. With a ``probe`` the graph computes the entropy statistics of
those maps itself (``glassbox.export.entropy_graph``) and returns two small tensors instead of the maps, which
is what deployed graphs do (the maps cost more to return than the network to compute). ``export_onnx`` is the
plain ``torch.onnx.export`` step under it. Running a graph is ``glassbox.runtime``'s job.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from torch import Tensor, nn

from glassbox.entropy.probe import ProbeConfig
from glassbox.export.entropy_graph import ENTROPY_OUTPUTS, EntropyHead, graph_metadata


class OnnxExportError(ValueError):
    """The model cannot be exported as asked (unnamed outputs, unknown feature maps)."""


def export_onnx(model, example_inputs: tuple, path: str | Path, input_names: Sequence[str],
                output_names: Sequence[str], dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
                opset: int = 17, metadata: Mapping[str, str] | None = None) -> Path:
    """Export ``model`` (eval mode, CPU) to ONNX at ``path`` and check the file with the ONNX checker.

    The model's ``forward`` must return a tuple (or a single tensor) in the order of ``output_names``.
    The file is written to a temporary name first and renamed, so a crash never leaves a partial model.
    ``metadata``: key/value strings stored in the model's ``metadata_props``.
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
    proto = onnx.load(str(tmp))
    if metadata:
        onnx.helper.set_model_props(proto, dict(metadata))
        onnx.save(proto, str(tmp))
    onnx.checker.check_model(proto)
    os.replace(tmp, path)
    return path


def head_tensors(head) -> tuple[Tensor, ...]:
    """A ``forward_head`` result as a flat tuple (a typed head is a tuple already; a bare tensor is wrapped)."""
    return (head,) if isinstance(head, Tensor) else tuple(head)


class FeatureGraph(nn.Module):
    """``forward(*inputs) -> (*head outputs, *feature maps)``: the output layout of an exported graph."""

    def __init__(self, model: nn.Module, feature_names: Sequence[str]):
        super().__init__()
        self.model = model
        self.feature_names = list(feature_names)

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        feats = self.model.forward_features(*inputs)
        return head_tensors(self.model.forward_head(feats)) + tuple(feats[n] for n in self.feature_names)


class EntropyGraph(nn.Module):
    """``forward(*inputs) -> (*head outputs, mean_log_r, sizes)``: the output layout of a graph exported with a
    probe: the head, then the in-graph entropy statistics of the probed maps (``EntropyHead``)."""

    def __init__(self, model: nn.Module, feature_names: Sequence[str], probe: ProbeConfig):
        super().__init__()
        self.model = model
        self.entropy = EntropyHead(feature_names, probe)

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        feats = self.model.forward_features(*inputs)
        return head_tensors(self.model.forward_head(feats)) + self.entropy(feats)


def _dynamic_axes(inputs: Mapping[str, Tensor], outputs: Mapping[str, Tensor], batch: bool, spatial: bool) -> dict:
    """Batch (axis 0) and, for 4-D tensors, height and width (axes 2, 3) as symbolic axes. The inputs share
    ``height``/``width``; every output has its own (feature maps sit at different strides). An input of another
    rank (a sampled head's noise, (samples, D)) has its own first axis, not the batch."""
    dyn: dict[str, dict[int, str]] = {}
    for n, t in [*inputs.items(), *outputs.items()]:
        first = f"{n}_rows" if n in inputs and t.dim() != 4 else "batch"
        axes = {0: first} if batch and t.dim() >= 1 and n != ENTROPY_OUTPUTS[1] else {}
        if spatial and t.dim() == 4:
            h, w = ("height", "width") if n in inputs else (f"{n}_height", f"{n}_width")
            axes.update({2: h, 3: w})
        if axes:
            dyn[n] = axes
    return dyn


def export_with_features(model: nn.Module, example_inputs: Mapping[str, Tensor], path: str | Path,
                         output_names: Sequence[str] | None = None, feature_names: Sequence[str] | None = None,
                         *, dynamic_batch: bool = True, dynamic_spatial: bool = False, opset: int = 17,
                         probe: ProbeConfig | None = None) -> dict:
    """Export ``model`` (``forward_features`` + ``forward_head``) to ONNX with feature maps as extra outputs;
    returns the model card's spec (``inputs`` with shapes and dtypes, ``outputs``, ``features``).

    ``example_inputs`` maps input names to example tensors, in ``forward_features``' argument order.
    ``output_names``: default the head's field names (required when the head is a bare tensor).
    ``feature_names``: default every 4-D map of ``forward_features`` that is not a head output.
    ``dynamic_batch`` / ``dynamic_spatial``: batch / height and width become symbolic axes.
    ``probe``: the graph returns the in-graph entropy statistics of the feature maps under this probe
    configuration (outputs ``entropy_mean_log_r``, ``entropy_sizes``, described in the model's metadata)
    instead of the maps; the spec's ``features`` still names the probed maps.
    """
    import torch

    model = model.eval().cpu()
    inputs = {k: v.detach().cpu() for k, v in example_inputs.items()}
    with torch.no_grad():
        feats = model.forward_features(*inputs.values())
        head = model.forward_head(feats)
    if output_names is None:
        if not hasattr(head, "_fields"):
            raise OnnxExportError(f"{type(model).__name__}.forward_head returns no named head: give output_names")
        output_names = head._fields
    outputs = dict(zip(output_names, head_tensors(head)))
    names = ([n for n, t in feats.items() if t.dim() == 4 and n not in outputs] if feature_names is None
             else list(feature_names))
    missing = [n for n in names if n not in feats]
    if missing:
        raise OnnxExportError(f"model has no feature '{missing[0]}' (has: {', '.join(feats)})")
    if probe is None:
        graph, metadata = FeatureGraph(model, names), None
        outputs.update({n: feats[n] for n in names})
    else:
        graph, metadata = EntropyGraph(model, names, probe), graph_metadata(names, probe)
        with torch.no_grad():
            outputs.update(zip(ENTROPY_OUTPUTS, graph.entropy(feats)))
    export_onnx(graph.eval(), tuple(inputs.values()), path, list(inputs), list(outputs), opset=opset, metadata=metadata,
                dynamic_axes=_dynamic_axes(inputs, outputs, dynamic_batch, dynamic_spatial))
    spatial = {"dynamic": ["height", "width"]} if dynamic_spatial else {}
    return {"inputs": {k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", ""),
                           **(spatial if v.dim() == 4 else {})} for k, v in inputs.items()},
            "outputs": list(output_names), "features": names}
