"""Anchor-free (CenterNet-style, Zhou et al. 2019) targets, loss and decoding for the GEM detection head.

Encoding: each box puts a Gaussian peak (exactly 1 at its centre cell, radius from the CenterNet formula for
an IoU >= 0.7 corner tolerance) into its class heatmap at output stride ``stride``; overlapping peaks merge by
element-wise max. At the centre cell the targets also hold the box size (w, h) in output cells and the
sub-cell offset of the true centre. Loss: the penalty-reduced focal loss (alpha 2, beta 4) on the heatmap,
normalised by the number of objects, plus L1 on size (weight 0.1) and offset (weight 1) at centre cells.
Decoding (numpy, shared by the torch and ONNX Runtime pipelines): sigmoid, 3x3 local maxima, top-k above a
score threshold -> pixel xyxy boxes, scores, classes.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import maximum_filter
from torch import Tensor
from torch.nn import functional as F


def gaussian_radius(h: np.ndarray, w: np.ndarray, min_overlap: float = 0.7) -> np.ndarray:
    """CenterNet's radius: the largest corner shift that keeps IoU >= ``min_overlap`` (smallest of 3 cases)."""
    a1, b1 = 1.0, h + w
    c1 = w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + np.sqrt(b1 ** 2 - 4 * a1 * c1)) / 2
    a2, b2, c2 = 4.0, 2 * (h + w), (1 - min_overlap) * w * h
    r2 = (b2 + np.sqrt(b2 ** 2 - 4 * a2 * c2)) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (h + w), (min_overlap - 1) * w * h
    r3 = (b3 + np.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return np.minimum(np.minimum(r1, r2), r3)


def encode_targets(boxes: np.ndarray, classes: np.ndarray, out_hw: tuple[int, int], stride: int,
                   num_classes: int) -> dict[str, np.ndarray]:
    """Pixel xyxy boxes -> heatmap (K, h, w), size (2, h, w), offset (2, h, w), mask (h, w) float32."""
    h, w = out_hw
    heat = np.zeros((num_classes, h, w), np.float32)
    size = np.zeros((2, h, w), np.float32)
    offset = np.zeros((2, h, w), np.float32)
    mask = np.zeros((h, w), np.float32)
    if len(boxes) == 0:
        return {"heatmap": heat, "size": size, "offset": offset, "mask": mask}
    b = np.asarray(boxes, np.float64) / stride
    bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    ix = np.clip(np.floor(cx).astype(np.int64), 0, w - 1)
    iy = np.clip(np.floor(cy).astype(np.int64), 0, h - 1)
    sigma = np.maximum(np.floor(gaussian_radius(bh, bw)), 0) * 2 / 6 + 1 / 3   # (2r+1)/6, as CenterNet
    ys, xs = np.arange(h)[:, None], np.arange(w)[None, :]
    # One Gaussian per object (objects per frame are few; each is an (h, w) array op).
    for k in np.argsort(bw * bh)[::-1]:                                         # small boxes win centre cells
        g = np.exp(-((xs - ix[k]) ** 2 + (ys - iy[k]) ** 2) / (2 * sigma[k] ** 2))
        heat[classes[k]] = np.maximum(heat[classes[k]], g)
        size[:, iy[k], ix[k]] = (bw[k], bh[k])
        offset[:, iy[k], ix[k]] = (cx[k] - ix[k], cy[k] - iy[k])
        mask[iy[k], ix[k]] = 1.0
    return {"heatmap": heat, "size": size, "offset": offset, "mask": mask}


def focal_loss(logits: Tensor, target: Tensor, alpha: float = 2.0, beta: float = 4.0) -> Tensor:
    """CenterNet's penalty-reduced focal loss, summed and divided by max(1, number of peaks)."""
    return focal_loss_prob(torch.sigmoid(logits), target, alpha, beta)


def focal_loss_prob(p: Tensor, target: Tensor, alpha: float = 2.0, beta: float = 4.0) -> Tensor:
    """``focal_loss`` of probabilities (e.g. the predictive mean of a sampled head)."""
    p = p.clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1.0).to(p.dtype)
    pos_loss = -torch.log(p) * (1 - p) ** alpha * pos
    neg_loss = -torch.log(1 - p) * p ** alpha * (1 - target) ** beta * (1 - pos)
    return (pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1.0)


def centernet_loss(heat_logits: Tensor, size: Tensor, offset: Tensor, targets: dict[str, Tensor],
                   size_weight: float = 0.1, offset_weight: float = 1.0) -> tuple[Tensor, dict[str, float]]:
    """Total detection loss and its terms (focal, size L1, offset L1)."""
    hm = focal_loss(heat_logits, targets["heatmap"])
    m = targets["mask"][:, None]                                               # (B, 1, h, w)
    n = m.sum().clamp(min=1.0)
    l_size = (F.l1_loss(size, targets["size"], reduction="none") * m).sum() / n
    l_off = (F.l1_loss(offset, targets["offset"], reduction="none") * m).sum() / n
    total = hm + size_weight * l_size + offset_weight * l_off
    return total, {"focal": float(hm.detach()), "size_l1": float(l_size.detach()), "offset_l1": float(l_off.detach())}


def decode(heat_logits: np.ndarray, size: np.ndarray, offset: np.ndarray, stride: int, max_detections: int = 100,
           score_threshold: float = 0.1, cells: bool = False) -> tuple[np.ndarray, ...]:
    """One image: heat (K, h, w) logits, size (2, h, w), offset (2, h, w) -> boxes (N, 4), scores, classes, and
    with ``cells`` the peak cell of each, (N, 2) (row, column) of the output map."""
    heat = 1.0 / (1.0 + np.exp(-heat_logits.astype(np.float32)))
    peaks = (heat == maximum_filter(heat, size=(1, 3, 3), mode="constant", cval=0.0)) & (heat >= score_threshold)
    cls, ys, xs = np.nonzero(peaks)
    scores = heat[cls, ys, xs]
    order = np.argsort(-scores, kind="mergesort")[:max_detections]
    cls, ys, xs, scores = cls[order], ys[order], xs[order], scores[order]
    cx = (xs + offset[0, ys, xs]) * stride
    cy = (ys + offset[1, ys, xs]) * stride
    bw, bh = size[0, ys, xs] * stride, size[1, ys, xs] * stride
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1).astype(np.float32)
    if cells:
        return boxes, scores.astype(np.float32), cls.astype(np.int64), np.stack([ys, xs], axis=1)
    return boxes, scores.astype(np.float32), cls.astype(np.int64)


def score_entropy(scores: np.ndarray) -> np.ndarray:
    """Per-detection uncertainty: binary entropy (nats) of the detection score."""
    p = np.clip(scores.astype(np.float64), 1e-12, 1 - 1e-12)
    return (-(p * np.log(p) + (1 - p) * np.log(1 - p))).astype(np.float32)
