"""MOSAKD: teacher-free online self-distillation from in-batch k-NN soft labels (Tzelepi et al.).

For every sample, the ``k`` nearest other samples of the batch in the feature space of a tapped layer vote
with their *ground-truth* labels; the vote shares ``s_i = [k_1/k, ..., k_C/k]`` are a soft label, and the
network's softmax output is pulled towards it with a squared error. Soft labels are constants (computed under
``no_grad`` from the current batch; no memory bank). Choices the seed leaves open, fixed here: the sample is
excluded from its own neighbours (diagonal masked with +inf); ties are broken by a stable sort, so the result
is reproducible; the squared error is summed over classes and averaged over samples.

Where this differs from the paper (image classification only): for dense outputs (segmentation, heatmaps) the
samples are pixels. :func:`dense_samples` brings the labels (nearest) and logits (bilinear) to the tapped
map's resolution, drops ignored pixels and draws at most ``max_samples`` of them with a seeded generator.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MOSAKDError(ValueError):
    """Too few samples for the neighbourhood size, or shapes that do not fit."""


@torch.no_grad()
def knn_soft_labels(features: Tensor, labels: Tensor, num_classes: int, k: int) -> Tensor:
    """(N, C) class shares among each sample's ``k`` nearest other samples (Euclidean, self excluded)."""
    n = features.shape[0]
    if not 1 <= k <= n - 1:
        raise MOSAKDError(f"k must be in [1, N-1] = [1, {n - 1}] for N={n} samples, got k={k}")
    x = features.detach().float().flatten(1)
    dist = torch.cdist(x, x)
    dist.fill_diagonal_(float("inf"))
    nn_idx = torch.sort(dist, dim=1, stable=True).indices[:, :k]               # (N, k)
    votes = F.one_hot(labels[nn_idx], num_classes).to(x.dtype)                 # (N, k, C)
    return votes.mean(dim=1)


def mosakd_loss(features: Tensor, logits: Tensor, labels: Tensor, k: int) -> Tensor:
    """Squared error between softmax(logits) (N, C) and the k-NN soft labels from ``features`` (N, ...)."""
    if not (features.shape[0] == logits.shape[0] == labels.shape[0]):
        raise MOSAKDError(f"sample counts differ: features {features.shape[0]}, logits {logits.shape[0]}, "
                          f"labels {labels.shape[0]}")
    soft = knn_soft_labels(features, labels, logits.shape[1], k)
    return ((logits.float().softmax(dim=1) - soft) ** 2).sum(dim=1).mean()


def dense_samples(fmap: Tensor, logits: Tensor, labels: Tensor, max_samples: int, generator: torch.Generator,
                  ignore_index: Sequence[int] = (-1, 255)) -> tuple[Tensor, Tensor, Tensor]:
    """Pixels as samples: (B, D, h, w) map, (B, C, H, W) logits, (B, H, W) labels -> (N, D), (N, C), (N,)."""
    if fmap.dim() != 4 or logits.dim() != 4 or labels.dim() != 3:
        raise MOSAKDError(f"expected (B,D,h,w), (B,C,H,W), (B,H,W); got {tuple(fmap.shape)}, "
                          f"{tuple(logits.shape)}, {tuple(labels.shape)}")
    h, w = fmap.shape[-2:]
    lab = F.interpolate(labels[:, None].float(), size=(h, w), mode="nearest")[:, 0].long()   # (B, h, w)
    lg = logits if logits.shape[-2:] == (h, w) else F.interpolate(logits, size=(h, w), mode="bilinear",
                                                                  align_corners=False)
    feats = fmap.permute(0, 2, 3, 1).reshape(-1, fmap.shape[1])
    lg = lg.permute(0, 2, 3, 1).reshape(-1, lg.shape[1])
    lab = lab.reshape(-1)
    keep = torch.ones_like(lab, dtype=torch.bool)
    for ig in ignore_index:
        keep &= lab != ig
    idx = keep.nonzero().squeeze(1)
    if idx.numel() > max_samples:
        pick = torch.randperm(idx.numel(), generator=generator)[:max_samples]
        idx = idx[pick.to(idx.device)]
    return feats[idx], lg[idx], lab[idx]


class MOSAKDLoss(nn.Module):
    """MOSAKD over one or more tapped layers (one squared-error term per layer, summed, one shared weight).

    ``forward(features, logits, labels, generator)``: ``features`` maps layer names to tensors; class outputs
    ``(B, C)`` with ``(B,)`` labels use the samples directly, dense ``(B, C, H, W)`` with ``(B, H, W)`` labels
    use :func:`dense_samples`.
    """

    def __init__(self, layers: Sequence[str], k: int = 8, max_samples: int = 1024,
                 ignore_index: Sequence[int] = (-1, 255)):
        super().__init__()
        if not layers:
            raise MOSAKDError("MOSAKD needs at least one tapped layer")
        self.layers = list(layers)
        self.k = int(k)
        self.max_samples = int(max_samples)
        self.ignore_index = tuple(ignore_index)

    def forward(self, features: dict[str, Tensor], logits: Tensor, labels: Tensor,
                generator: torch.Generator) -> Tensor:
        total = None
        for name in self.layers:
            if name not in features:
                raise MOSAKDError(f"no feature '{name}' (has: {', '.join(features)})")
            f = features[name]
            if logits.dim() == 4:
                fs, ls, ys = dense_samples(f, logits, labels, self.max_samples, generator, self.ignore_index)
            else:
                keep = torch.ones_like(labels, dtype=torch.bool)
                for ig in self.ignore_index:
                    keep &= labels != ig
                fs, ls, ys = f[keep], logits[keep], labels[keep]
            term = mosakd_loss(fs, ls, ys, self.k)
            total = term if total is None else total + term
        return total


__all__ = ["MOSAKDError", "MOSAKDLoss", "dense_samples", "knn_soft_labels", "mosakd_loss"]
