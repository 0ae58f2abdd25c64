"""One inference interface for eager PyTorch and ONNX Runtime: named inputs in, named head outputs and feature
maps out, the same from both backends.

``Backend.run({name: array}) -> Inference(outputs, features)``: ``outputs`` are the fields of the model's head
(``glassbox.heads``) as numpy arrays, batch axis kept; ``features`` are the probed feature maps, torch tensors
on the model's device under torch (``forward_features``) and numpy arrays under ONNX Runtime (the extra outputs
of a graph written by ``glassbox.export.export_with_features``). A graph exported with a probe returns no maps but
the in-graph entropy statistics, ``entropy`` (``GraphEntropy``); the torch backend computes the same with the
same module when it is given that ``EntropyHead``. ``run(..., entropy=False)`` skips them: ONNX Runtime then
runs the graph pruned to the head (a second session from the same verified file, built on first use), since a
session computes every node whatever outputs are asked for. ``providers`` records what actually runs
(``torch:cpu``, ``CPUExecutionProvider``, ...) and ``warnings`` every fallback, each also logged as a warning.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from glassbox.export.entropy_graph import ENTROPY_OUTPUTS, METADATA_KEY, EntropyHead
from glassbox.runtime.providers import ProviderOptions, session_providers

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnxruntime")


class BackendError(RuntimeError):
    """A backend cannot be built (unknown backend, wrong model file, a graph without the head's outputs)."""


@dataclass(frozen=True)
class RuntimeConfig:
    """How a model runs. ``providers``: ONNX Runtime execution providers, tried in order; ``device``: the torch
    device (a CUDA device without CUDA falls back to the CPU, loudly); ``threads``: intra-op threads (0 = the
    library default; under torch this sets the process-wide ``torch.set_num_threads``); ``warmup_runs``: runs
    on example inputs when the pipeline is built (TensorRT engines and cuDNN plans are made then, not on the
    first frame)."""

    backend: Literal["torch", "onnxruntime"] = "torch"
    providers: tuple[str, ...] = ("cpu",)
    device: str = "cpu"
    threads: int = 0
    warmup_runs: int = 1
    allow_fallback_to_cpu: bool = True
    provider_options: ProviderOptions = field(default_factory=ProviderOptions)


class GraphEntropy(NamedTuple):
    """In-graph kNN statistics of the probed ``layers``: ``mean_log_r`` (B, L), ``sizes`` (L, 2) of n and d
    (``glassbox.entropy.probe.profile_from_knn`` makes the profile); ``params`` describe the estimate."""
    layers: tuple[str, ...]
    mean_log_r: np.ndarray
    sizes: np.ndarray
    params: dict[str, str]


class Inference(NamedTuple):
    outputs: dict[str, np.ndarray]
    features: dict[str, Any]
    entropy: GraphEntropy | None = None


class Backend:
    """The common part of both backends: names, the providers in use, fallback warnings and the warm-up."""

    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    providers: list[str]
    warnings: list[str]

    #: the probe the graph (or the torch entropy head) computes, as exported: layers, estimator, params
    entropy_spec: dict | None = None

    def run(self, inputs: Mapping[str, np.ndarray], entropy: bool = True) -> Inference:
        raise NotImplementedError

    def warmup(self, inputs: Mapping[str, np.ndarray], runs: int) -> None:
        for _ in range(runs):
            self.run(inputs)

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        log.warning(message)


class TorchBackend(Backend):
    """Eager PyTorch: ``forward_features`` then ``forward_head`` under ``torch.no_grad``, and the
    ``entropy_head`` (if any) on the features."""

    def __init__(self, model: nn.Module, cfg: RuntimeConfig, input_names: Sequence[str],
                 output_names: Sequence[str], entropy_head: EntropyHead | None = None) -> None:
        self.input_names, self.output_names, self.warnings = tuple(input_names), tuple(output_names), []
        device = cfg.device
        if device.startswith("cuda") and not torch.cuda.is_available():
            self._warn(f"torch device '{device}' is not available: FALLING BACK to the CPU, inference will be slow")
            device = "cpu"
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = device
        self.model = model.eval().to(device)
        self.providers = [f"torch:{device}"]
        self.entropy_head = entropy_head
        if entropy_head is not None:
            self.entropy_spec = {"layers": entropy_head.layers, "estimator": entropy_head.cfg.estimator,
                                 "params": entropy_head.params()}

    def run(self, inputs: Mapping[str, np.ndarray], entropy: bool = True) -> Inference:
        stats = None
        with torch.no_grad():
            ts = [torch.from_numpy(np.ascontiguousarray(inputs[n], dtype=np.float32)).to(self.device)
                  for n in self.input_names]
            feats = self.model.forward_features(*ts)
            head = self.model.forward_head(feats)
            if entropy and self.entropy_head is not None:
                mean_log_r, sizes = self.entropy_head(feats)
                stats = GraphEntropy(self.entropy_head.names(feats), mean_log_r.cpu().numpy(), sizes.cpu().numpy(),
                                     self.entropy_spec["params"])
        outputs = dict(zip(head._fields, head))
        return Inference({n: outputs[n].cpu().numpy() for n in self.output_names}, feats, stats)


class OrtBackend(Backend):
    """An ONNX Runtime session. ``output_names``: the head's outputs (the other graph outputs are the feature
    maps); None takes every graph output as an output (a graph that is not a glassbox model)."""

    def __init__(self, path: str | Path, cfg: RuntimeConfig = RuntimeConfig(backend="onnxruntime"),
                 output_names: Sequence[str] | None = None) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}")
        requested, self.warnings = session_providers(cfg.providers, cfg.provider_options,
                                                     allow_fallback_to_cpu=cfg.allow_fallback_to_cpu)
        for w in self.warnings:
            log.warning(w)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if cfg.threads:
            opts.intra_op_num_threads = cfg.threads
        self._open_session = lambda model: ort.InferenceSession(model, sess_options=opts, providers=requested)
        self.path, self._head_session = path, None
        self.session = self._open_session(str(path))
        self.providers = list(self.session.get_providers())
        if self.providers[0] != requested[0][0]:     # ORT dropped a provider it could not initialise
            self._warn(f"onnxruntime could not start {requested[0][0]}: FALLING BACK to {self.providers[0]}")
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self.graph_outputs = tuple(o.name for o in self.session.get_outputs())
        self.output_names = self.graph_outputs if output_names is None else tuple(output_names)
        missing = [n for n in self.output_names if n not in self.graph_outputs]
        if missing:
            raise BackendError(f"{path}: graph lacks output '{missing[0]}' (has: {', '.join(self.graph_outputs)})")
        spec = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        self.entropy_spec = json.loads(spec) if spec and ENTROPY_OUTPUTS[0] in self.graph_outputs else None

    def head_session(self):
        """The session of the graph pruned to the head outputs (what runs when no entropy is asked for)."""
        if self._head_session is None:
            import onnx

            model = onnx.load(str(self.path))
            pruned = onnx.utils.Extractor(model).extract_model([i.name for i in model.graph.input],
                                                                list(self.output_names))
            self._head_session = self._open_session(pruned.SerializeToString())
        return self._head_session

    def run(self, inputs: Mapping[str, np.ndarray], entropy: bool = True) -> Inference:
        feed = {n: np.ascontiguousarray(inputs[n], dtype=np.float32) for n in self.input_names}
        if not entropy and len(self.graph_outputs) > len(self.output_names):
            values = self.head_session().run(list(self.output_names), feed)
            return Inference(dict(zip(self.output_names, values)), {})
        out = dict(zip(self.graph_outputs, self.session.run(list(self.graph_outputs), feed)))
        stats = None
        if self.entropy_spec is not None:
            stats = GraphEntropy(tuple(self.entropy_spec["layers"]), out.pop(ENTROPY_OUTPUTS[0]),
                                 out.pop(ENTROPY_OUTPUTS[1]), dict(self.entropy_spec["params"]))
        return Inference({n: out[n] for n in self.output_names},
                         {n: v for n, v in out.items() if n not in self.output_names}, stats)


def load_state(path: str | Path) -> tuple[dict, dict[str, Tensor]]:
    """``(config dict, state dict)`` from a ``.pt`` file: a checkpoint with ``config`` and ``state_dict`` (the
    camera tasks), one holding the state dict under ``model`` (the trainer), or a bare state dict."""
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        return dict(state.get("config", {})), state["state_dict"]
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        return {}, state["model"]
    if not isinstance(state, dict):
        raise BackendError(f"{path}: expected a state dict, got {type(state).__name__}")
    return {}, state


def open_backend(cfg: RuntimeConfig, model_path: str, build_model: Callable[[dict], nn.Module],
                 input_names: Sequence[str], output_names: Sequence[str],
                 entropy_head: EntropyHead | None = None) -> Backend:
    """The backend ``cfg.backend`` for ``model_path``: a ``.pt`` file (torch; empty = the freshly built model)
    loaded into ``build_model(saved config dict)``, or an ``.onnx`` graph (onnxruntime). ``entropy_head``: what
    the torch backend computes in place of an exported graph's entropy outputs."""
    model_path = str(model_path)
    if cfg.backend == "torch":
        if model_path and not model_path.endswith(".pt"):
            raise BackendError(f"the torch backend loads a .pt state dict, got {model_path}")
        saved, state = load_state(model_path) if model_path else ({}, None)
        model = build_model(saved)
        if state is not None:
            model.load_state_dict(state)
        return TorchBackend(model, cfg, input_names, output_names, entropy_head)
    if cfg.backend == "onnxruntime":
        if not model_path.endswith(".onnx"):
            raise BackendError(f"the onnxruntime backend needs an .onnx model_path, got {model_path!r}")
        return OrtBackend(model_path, cfg, output_names)
    raise BackendError(f"unknown backend '{cfg.backend}' (known: {', '.join(BACKENDS)})")
