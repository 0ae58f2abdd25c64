"""The typed outputs of every network's ``forward_head`` (and ``forward``): one NamedTuple per task family.

A head is a tuple, so it unpacks (``heat, size, offset, w_rgb, w_thermal = gem(rgb, thermal)``) and exports to
ONNX as a flat list of outputs; its field names are the output names of the exported graph, which is how the
runtime (``glassbox.runtime``) names the outputs of both backends the same way. The fields hold torch tensors
from a model and numpy arrays from an ONNX Runtime session (``Head._make`` of the named outputs).
"""
from __future__ import annotations

from typing import Any, NamedTuple


class Detection3DHead(NamedTuple):
    """Range-image 3D detection (``glassbox.lidar.spi``), all (B, ., H, W) at the input resolution."""

    heatmap: Any        # (B, K, H, W) class logits
    offset: Any         # (B, 3, H, W) centre offset (viewing frame, metres)
    size: Any           # (B, 3, H, W) log box size
    yaw: Any            # (B, 3, H, W) sin 2a, cos 2a, direction logit


class VariationalDetection3DHead(NamedTuple):
    """A variational SPI head (``head: variational``): the moments of its Gaussian outputs, which hold every sample
    (``glassbox.lidar.spi``, whose ``peak_parts`` forms the ``T`` samples at the detections).

    The first four fields are those of ``Detection3DHead``, the heatmap as the logit of the Gaussian predictive
    (``glassbox.vnn.probit_logit``) and the offset as its mean, so the decoder is the same; then the mean and std
    of the heat logits, the std of the offset and the mean and std of its log-variance (viewing frame)."""

    heatmap: Any                # (B, K, H, W) logit of the predictive probability
    offset: Any                 # (B, 3, H, W) mean
    size: Any                   # (B, 3, H, W)
    yaw: Any                    # (B, 3, H, W)
    heatmap_mean: Any           # (B, K, H, W) mean of the heat logit
    heatmap_std: Any            # (B, K, H, W) its std
    offset_std: Any             # (B, 3, H, W) std of the offset, m
    offset_log_var_mean: Any    # (B, 3, H, W) mean of the offset's log-variance (log m^2)
    offset_log_var_std: Any     # (B, 3, H, W) its std


class SampledDetection3DHead(NamedTuple):
    """An MC dropout SPI head (``head: mc_dropout``): the predictive of ``T`` samples evaluated at every pixel.

    The first four fields are those of ``Detection3DHead`` (the heatmap as the logit of the mean probability, the
    offset as the sample mean), so the decoder is the same; then, per pixel, the score's aleatoric and epistemic
    entropy (nats) and the aleatoric and epistemic variance of the offset (viewing frame: radial, tangential, z;
    m^2)."""

    heatmap: Any                # (B, K, H, W) logit of the predictive probability
    offset: Any                 # (B, 3, H, W)
    size: Any                   # (B, 3, H, W)
    yaw: Any                    # (B, 3, H, W)
    heatmap_aleatoric: Any      # (B, K, H, W) E_t H(p_t)
    heatmap_epistemic: Any      # (B, K, H, W) mutual information
    offset_var_aleatoric: Any   # (B, 3, H, W) E_t v_t
    offset_var_epistemic: Any   # (B, 3, H, W) Var_t m_t


class Detection2DHead(NamedTuple):
    """CenterNet-style 2D detection at the model's output stride (``glassbox.vision.gem``)."""

    heatmap: Any        # (B, K, h, w) class logits
    size: Any           # (B, 2, h, w) box width, height in output cells
    offset: Any         # (B, 2, h, w) sub-cell centre offset
    w_rgb: Any          # (B,) fusion weight of the RGB branch (1 where the mode has none)
    w_thermal: Any      # (B,) fusion weight of the thermal branch


class VariationalDetection2DHead(NamedTuple):
    """A variational GEM head (``head: variational``): the moments of its Gaussian outputs, which hold every sample
    (``glassbox.vision.gem``, whose ``peak_parts`` forms the ``T`` samples at the detections).

    The first five fields are those of ``Detection2DHead``, the heat map as the logit of the Gaussian predictive
    (``glassbox.vnn.probit_logit``), size and offset at the noise's mean, so the decoder is the same; then the
    mean and std of the three convs' outputs (heat logits; w, h and their log-variances; dx, dy and theirs)."""

    heatmap: Any                # (B, K, h, w) logit of the predictive probability
    size: Any                   # (B, 2, h, w)
    offset: Any                 # (B, 2, h, w)
    w_rgb: Any                  # (B,)
    w_thermal: Any              # (B,)
    heatmap_mean: Any           # (B, K, h, w)
    heatmap_std: Any            # (B, K, h, w)
    size_mean: Any              # (B, 4, h, w) w, h (before the ReLU), log var w, log var h
    size_std: Any               # (B, 4, h, w)
    offset_mean: Any            # (B, 4, h, w) dx, dy (before the sigmoid), log var dx, log var dy
    offset_std: Any             # (B, 4, h, w)


class SampledDetection2DHead(NamedTuple):
    """An MC dropout GEM head (``head: mc_dropout``): the predictive of ``T`` samples evaluated in every cell.

    The first five fields are those of ``Detection2DHead`` (the heatmap as the logit of the mean probability,
    size and offset as sample means), so the decoder is the same; then, per cell, the score's aleatoric and
    epistemic entropy (nats) and the aleatoric and epistemic variance of (w, h, dx, dy), in output cells^2.
    """

    heatmap: Any                # (B, K, h, w) logit of the predictive probability
    size: Any                   # (B, 2, h, w)
    offset: Any                 # (B, 2, h, w)
    w_rgb: Any                  # (B,)
    w_thermal: Any              # (B,)
    heatmap_aleatoric: Any      # (B, K, h, w) E_t H(p_t)
    heatmap_epistemic: Any      # (B, K, h, w) mutual information
    box_var_aleatoric: Any      # (B, 4, h, w) E_t v_t of (w, h, dx, dy)
    box_var_epistemic: Any      # (B, 4, h, w) Var_t m_t of (w, h, dx, dy)


class DenseLogits(NamedTuple):
    """Per-pixel class scores at the input resolution (``glassbox.vision.bisenet``)."""

    logits: Any         # (B, K, H, W)


class SampledDenseLogits(NamedTuple):
    """A sampled BiSeNet classifier (``head: variational`` / ``mc_dropout``): the predictive of ``T`` samples at
    the input resolution. ``logits`` are the log of the mean class probabilities (their softmax is the
    predictive), so what reads ``DenseLogits`` reads this too."""

    logits: Any         # (B, K, H, W) log predictive probabilities
    epistemic: Any      # (B, 1, H, W) mutual information between the label and the network sample, nats


class RefinedImage(NamedTuple):
    """An image-to-image refinement (``glassbox.vision.refiner``), unclipped."""

    refined: Any        # (B, C, H, W)

