"""Entropy inside the exported graph: the per-layer kNN statistics of the probed feature maps, computed by the
runtime (ONNX Runtime, TensorRT) next to the network instead of returning every feature map to the host.

``EntropyHead`` maps named feature maps to ``(mean_log_r (B, L), sizes (L, 2))``: for each probed layer, the
channels-as-samples sets of ``glassbox.entropy.sampling.stratified_samples`` (the seeded channel subset and
stratified spatial positions, so that one traced graph samples any input size), then the mean log distance
to the k-th neighbour (``knn_mean_log_distance``), with every layer of the same sample dimension estimated in
one zero-padded block. ``sizes`` holds each layer's sample count n and dimension d; the host adds the
constant ``knn_offset(n, d, k)`` (``glassbox.entropy.profile_from_knn``), which needs digamma and lgamma,
operators that ONNX lacks. The same module runs eagerly under the torch backend, so both backends give the
same profile. Only what the shipped cards use is supported: the kNN estimator, channels as samples, batch
mean.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glassbox.entropy.probe import ProbeConfig
from glassbox.entropy.estimators import knn_mean_log_distance
from glassbox.entropy.sampling import stratified_samples

#: graph outputs of the entropy head, and the ONNX metadata key describing it
ENTROPY_OUTPUTS = ("entropy_mean_log_r", "entropy_sizes")
METADATA_KEY = "glassbox.entropy"


class EntropyGraphError(ValueError):
    """A probe configuration the in-graph estimator does not compute."""


def graph_probe_params(cfg: ProbeConfig) -> dict[str, str]:
    """What an in-graph estimate is, as the string pairs of a profile's ``estimator_params``."""
    return {**cfg.params(), "positions": "stratified"}


def check_graph_probe(cfg: ProbeConfig) -> None:
    unsupported = [f"{k}={getattr(cfg, k)!r}" for k, ok in (("estimator", "knn"), ("sample_mode", "channels"),
                                                           ("batch", "mean")) if getattr(cfg, k) != ok]
    if unsupported:
        raise EntropyGraphError(f"the in-graph estimator computes estimator='knn', sample_mode='channels', "
                                f"batch='mean'; got {', '.join(unsupported)} (export the feature maps instead)")


def graph_metadata(layers: Sequence[str], cfg: ProbeConfig) -> dict[str, str]:
    """The ONNX metadata entry of a graph with an entropy head (read back by ``glassbox.runtime``)."""
    return {METADATA_KEY: json.dumps({"layers": list(layers), "estimator": cfg.estimator,
                                      "params": graph_probe_params(cfg)})}


class EntropyHead(nn.Module):
    """``forward(features) -> (mean_log_r (B, L), sizes (L, 2) int64)`` for the probed ``layers`` (None: every
    4-D map, in the mapping's order)."""

    def __init__(self, layers: Sequence[str] | None, cfg: ProbeConfig) -> None:
        super().__init__()
        check_graph_probe(cfg)
        self.layers = None if layers is None else tuple(layers)
        self.cfg = cfg

    def params(self) -> dict[str, str]:
        return graph_probe_params(self.cfg)

    def names(self, features: Mapping[str, Tensor]) -> tuple[str, ...]:
        return self.layers if self.layers is not None else tuple(n for n, f in features.items() if f.dim() == 4)

    def forward(self, features: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        cfg = self.cfg
        maps = [features[n] for n in self.names(features)]
        sets = [stratified_samples(f, cfg.max_samples, cfg.max_dim, cfg.seed) for f in maps]   # (B, n_l, d_l)
        groups: dict[tuple, list[int]] = {}
        for i, f in enumerate(maps):       # one block per sample dimension: max_dim, or the spatial size
            spatial = tuple(int(s) for s in f.shape[2:])
            fixed = cfg.max_dim is not None and math.prod(spatial) > cfg.max_dim
            groups.setdefault(("fixed",) if fixed else spatial, []).append(i)
        parts: list[Tensor | None] = [None] * len(sets)
        for members in groups.values():
            counts = [int(sets[i].shape[1]) for i in members]
            width = max(counts)
            block = torch.stack([F.pad(sets[i], (0, 0, 0, width - c)) if c < width else sets[i]
                                 for i, c in zip(members, counts)], 1)          # (B, G, n_max, d)
            weights = torch.tensor(counts, dtype=block.dtype) if min(counts) < width else None
            stat = knn_mean_log_distance(block, cfg.k, counts=weights)          # (B, G)
            for g, i in enumerate(members):
                parts[i] = stat[:, g]
        sizes = torch.stack([torch._shape_as_tensor(x)[1:3] for x in sets])     # (L, 2)
        return torch.stack(parts, 1), sizes
