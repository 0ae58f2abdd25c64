"""SPI: a heatmap 3D detector on the Spherical Pseudo Image (range image) of a LiDAR scan.

After the OpenDR D4.2 SPI detector (seed §3.1): a 2D CNN on the range image, a FairMOT/CenterNet-style heatmap
per class, and per-pixel regression of a 3D offset, size and yaw; a box is the 3D point of a heatmap peak plus
the regressed offset. Decoding lives in ``glassbox.lidar.decode``; this module holds the network and its loss.

Where the seed is silent (or differs) and what this module does:

- Backbone: the seed compares FPN and DLA-34. Here a SECOND-like stack of stages of repeated
  conv3x3-BN-ReLU blocks (stride set per stage, e.g. full resolution, then /2 in width, then /2 in both), whose
  post-ReLU outputs are named ``s<stage>_b<block>`` in ``forward_features``: they are the probe points of the
  entropy profile and the layer groups of the entropy loss (one group per stage). Each stage output is
  upsampled back to full resolution with a transposed conv and the maps are concatenated (the SECOND/PointPillars
  neck), so the heads run at the resolution of the range image and every pixel owns one 3D point.
- Heads: one shared conv3x3-BN-ReLU, then 1x1 convs: heatmap logits (K classes), offset (3), log size (3) and
  yaw (3). The heatmap bias starts at -2.19 (prior 0.1) as in CenterNet.
- Yaw: the seed regresses "a rotation angle". A LiDAR sees the axis of a car far better than which end is its
  front, and regressing (sin, cos) of an angle whose direction is a coin toss averages the two answers into
  nothing (the training loss of that variant stays at its chance level). So the yaw head gives the *axis* as
  (sin 2a, cos 2a), which is unambiguous, plus a direction logit that picks a or a + pi (SECOND's direction
  classifier); box IoU depends on the axis only.
- Frame of the regression: offset (dx, dy) and yaw are regressed in the *viewing frame* of the pixel's point
  (rotated by its azimuth phi = atan2(y, x)); dz and sizes are frame-free. A rotation of the scene about z shifts
  the range image along its columns, which a conv net follows for free, so targets that rotate with the point
  keep the task translation-equivariant along the azimuth. The decoder rotates back (seed: offsets in the LiDAR
  frame; RangeDet uses the same local frame for the same reason).
- Losses: CenterNet's penalty-reduced focal loss (alpha 2, beta 4) on the heatmap, normalised by the number of
  objects; smooth-L1 on offset (metres), log size and (sin, cos), averaged over the pixels whose point lies inside
  a ground-truth box (dense supervision over the object, rather than the centre pixel only, see
  ``glassbox.lidar.targets``). For rare classes: a weight per class on the heatmap, and optionally a weight per
  object pixel that makes every object count alike in the regression (``TargetConfig.balance_power``).
- Padding is zero padding in both directions (no wrap-around across the 0/360 degree seam), which keeps the
  exported ONNX graph to plain Conv ops.

*Sampled head* (``head``: ``variational`` or ``mc_dropout``, ``glassbox.vnn.SampledConvHead``): the heatmap conv
and the offset conv, which then also gives a log-variance per offset axis, are sampled ``head_samples`` times as
one batch of the head only (the trunk and the shared conv run once); size and yaw stay deterministic convs.
Training (``head_samples``, ``sampled_spi_loss``) draws fresh noise; inference uses the fixed index
(``spi_index_noise``, drawn from ``head_seed``), so it is deterministic. The decoder reads the same four maps as
the deterministic head's; what else the graph returns depends on the kind:

- ``variational`` (``VariationalDetection3DHead``): a sample is ``mu + sigma * eps_t`` with one ``eps`` per output
  channel, the same at every pixel, so the two moment maps hold every sample. The graph returns them, the heatmap
  as the logit of the Gaussian predictive in closed form (``glassbox.vnn.probit_logit``) and the offset as its
  mean ``mu``; the ``T`` samples of the index are formed only at the decoded peaks (``peak_parts``), where the
  score's entropy and the offset's variance are split into their aleatoric and epistemic parts. The graph has no
  noise input, and its cost over the deterministic head is two more 1x1 convs and a few elementwise maps.
- ``mc_dropout`` (``SampledDetection3DHead``): a dropout mask acts on the input channels, so the samples are not
  affine in the noise; the graph takes the index as the input ``head_noise`` (T, D), evaluates the ``T`` samples
  at every pixel and returns the predictive (the heatmap as the logit of the mean probability, the offset as the
  sample mean) and the per-pixel parts.

``variational_state`` turns a deterministic model's weights into a sampled model's.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glassbox.classes import DETECTION_CLASSES
from glassbox.heads import Detection3DHead, SampledDetection3DHead, VariationalDetection3DHead
from glassbox.vnn import (HEAD_KINDS, SampledConvHead, bernoulli_split, draw_head_noise, gaussian_split,
                          mixture_gaussian_nll, predictive_logit, probit_logit, sampled_head_state)


class SpiError(ValueError):
    """An SPI configuration or input the network cannot handle."""


@dataclass(frozen=True)
class SpiConfig:
    """Network shape. ``stage_strides[i]`` is the (row, col) stride of stage i's first block."""

    in_channels: int = 5
    num_classes: int = len(DETECTION_CLASSES)
    stem_channels: int = 16
    stage_channels: tuple[int, ...] = (16, 32, 64)
    stage_blocks: tuple[int, ...] = (2, 3, 3)
    stage_strides: tuple[tuple[int, int], ...] = ((1, 1), (1, 2), (2, 2))
    neck_channels: int = 12
    head_channels: int = 24
    heatmap_prior: float = 0.1
    head: str = "deterministic"            # or "variational" / "mc_dropout" (sampled head, module docstring)
    head_samples: int = 8                  # T of a sampled head
    head_dropout: float = 0.2              # input channel dropout of an mc_dropout head
    head_seed: int = 0                     # seed of the fixed noise index of a sampled head

    def __post_init__(self) -> None:
        n = len(self.stage_channels)
        if not (len(self.stage_blocks) == len(self.stage_strides) == n) or n == 0:
            raise SpiError("stage_channels, stage_blocks and stage_strides need the same non-zero length")
        if any(b < 1 for b in self.stage_blocks):
            raise SpiError(f"every stage needs at least one block, got {self.stage_blocks}")
        if not 0.0 < self.heatmap_prior < 1.0:
            raise SpiError(f"heatmap_prior must be in (0, 1), got {self.heatmap_prior}")
        if self.head != "deterministic" and self.head not in HEAD_KINDS:
            raise SpiError(f"head must be 'deterministic' or one of {HEAD_KINDS}, got {self.head!r}")
        if self.head_samples < 2:
            raise SpiError(f"head_samples must be >= 2, got {self.head_samples}")

    @property
    def total_stride(self) -> tuple[int, int]:
        """Input height and width must be multiples of these."""
        sr = math.prod(s[0] for s in self.stage_strides)
        sc = math.prod(s[1] for s in self.stage_strides)
        return sr, sc


#: Named sizes: the small default (Jetson-sized) and a wider, deeper teacher for distillation.
SpiHead = Detection3DHead | VariationalDetection3DHead | SampledDetection3DHead

SIZES: dict[str, dict] = {
    "default": {},
    "student": {},
    "teacher": {"stem_channels": 32, "stage_channels": (32, 64, 128), "stage_blocks": (3, 5, 5),
                "neck_channels": 32, "head_channels": 64},
}


class ConvBlock(nn.Sequential):
    """conv3x3 - BN - ReLU."""

    def __init__(self, cin: int, cout: int, stride: tuple[int, int] = (1, 1)):
        super().__init__(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Spi(nn.Module):
    """Range image (B, C, H, W) -> heatmap logits (B, K, H, W), offset, log size (B, 3, H, W), yaw (B, 3, H, W)
    (sin 2a, cos 2a, direction logit)."""

    def __init__(self, cfg: SpiConfig):
        super().__init__()
        self.cfg = cfg
        self.stem = ConvBlock(cfg.in_channels, cfg.stem_channels)
        self.blocks = nn.ModuleDict()
        self.ups = nn.ModuleList()
        cin = cfg.stem_channels
        up_stride = [1, 1]
        for i, (cout, nblocks, stride) in enumerate(zip(cfg.stage_channels, cfg.stage_blocks, cfg.stage_strides)):
            for j in range(nblocks):
                self.blocks[f"s{i + 1}_b{j}"] = ConvBlock(cin, cout, tuple(stride) if j == 0 else (1, 1))
                cin = cout
            up_stride = [up_stride[0] * stride[0], up_stride[1] * stride[1]]
            if up_stride == [1, 1]:
                up = nn.Conv2d(cout, cfg.neck_channels, 1, bias=False)
            else:
                up = nn.ConvTranspose2d(cout, cfg.neck_channels, tuple(up_stride), stride=tuple(up_stride),
                                        bias=False)
            self.ups.append(nn.Sequential(up, nn.BatchNorm2d(cfg.neck_channels), nn.ReLU(inplace=True)))
        self.stage_last = [f"s{i + 1}_b{n - 1}" for i, n in enumerate(cfg.stage_blocks)]
        self.shared = ConvBlock(cfg.neck_channels * len(cfg.stage_channels), cfg.head_channels)
        hc, prior = cfg.head_channels, -math.log((1 - cfg.heatmap_prior) / cfg.heatmap_prior)
        self.sampled = cfg.head != "deterministic"
        if self.sampled:
            self.heatmap = SampledConvHead(hc, cfg.num_classes, cfg.head, cfg.head_dropout)
            self.offset = SampledConvHead(hc, 6, cfg.head, cfg.head_dropout)     # (dx, dy, dz, their log var)
            nn.init.constant_(self.heatmap.mean_conv.bias, prior)
            self.register_buffer("index_noise", spi_index_noise(cfg))
        else:
            self.heatmap = nn.Conv2d(hc, cfg.num_classes, 1)
            self.offset = nn.Conv2d(hc, 3, 1)
            nn.init.constant_(self.heatmap.bias, prior)
        self.size = nn.Conv2d(hc, 3, 1)
        self.yaw = nn.Conv2d(hc, 3, 1)

    @property
    def block_names(self) -> list[str]:
        return list(self.blocks.keys())

    def eloss_groups(self) -> list[list[str]]:
        """Feature names of the repeated blocks, one group per stage (stages of one block are left out)."""
        groups = []
        for i, n in enumerate(self.cfg.stage_blocks):
            if n >= 2:
                groups.append([f"s{i + 1}_b{j}" for j in range(n)])
        return groups

    def forward_features(self, x: Tensor, head_noise: Tensor | None = None) -> dict[str, Tensor]:
        """Named post-ReLU maps: ``stem``, every ``s<i>_b<j>`` block and the concatenated ``neck``; a sampled
        head's noise as ``head_noise`` (the given one, else fresh noise in training and the fixed index in eval)."""
        sr, sc = self.cfg.total_stride
        tracing = torch.jit.is_tracing()  # shapes are checked on eager calls only (the graph keeps H, W dynamic)
        if not tracing and (x.dim() != 4 or x.shape[1] != self.cfg.in_channels):
            raise SpiError(f"expected input (B, {self.cfg.in_channels}, H, W), got {tuple(x.shape)}")
        if not tracing and (x.shape[2] % sr or x.shape[3] % sc):
            raise SpiError(f"input height and width must be multiples of {sr} and {sc}, got {tuple(x.shape[2:])}")
        feats: dict[str, Tensor] = OrderedDict()
        h = self.stem(x)                                   # (B, C0, H, W)
        feats["stem"] = h
        for name, block in self.blocks.items():
            h = block(h)                                   # (B, Ci, H / sr_i, W / sc_i)
            feats[name] = h
        ups = [up(feats[name]) for up, name in zip(self.ups, self.stage_last)]  # each (B, Cn, H, W)
        feats["neck"] = torch.cat(ups, dim=1)              # (B, S * Cn, H, W)
        if self.sampled:
            if head_noise is None:
                head_noise = self.draw_noise(self.cfg.head_samples) if self.training else self.index_noise
            feats["head_noise"] = head_noise.to(x)
        return feats

    def draw_noise(self, samples: int, generator: torch.Generator | None = None) -> Tensor:
        """Fresh noise of a sampled head: (samples, D), the heatmap's and the offset's side by side."""
        return draw_spi_noise(self.cfg, samples, generator)

    def variational_state(self, deterministic: dict[str, Tensor]) -> dict[str, Tensor]:
        """A deterministic SPI's state dict as this sampled model's (``glassbox.vnn.sampled_head_state``: the
        heatmap and offset convs into the mean convs)."""
        return sampled_head_state(self.state_dict(), deterministic, ("heatmap", "offset"), self.cfg.head)

    def head_samples(self, features: dict[str, Tensor], shared: Tensor | None = None) -> dict[str, Tensor]:
        """A sampled head's ``T`` samples: heat logits (T, B, K, H, W), offset and its log-variance (T, B, 3, H, W),
        and the shared conv's output ``shared`` (B, Ch, H, W) that size and yaw read (given, or computed)."""
        h = self.shared(features["neck"]) if shared is None else shared
        z_heat, z_off = torch.split(features["head_noise"].to(h), [self.heatmap.noise_dim, self.offset.noise_dim],
                                    dim=1)
        off = self.offset(h, z_off)
        return {"heat": self.heatmap(h, z_heat), "offset": off[:, :, :3],
                "offset_log_var": off[:, :, 3:].clamp(-12.0, 6.0), "shared": h}

    def forward_head(self, features: dict[str, Tensor]) -> SpiHead:
        h = self.shared(features["neck"])                  # (B, Ch, H, W)
        if not self.sampled:
            return Detection3DHead(self.heatmap(h), self.offset(h), self.size(h), self.yaw(h))
        if self.cfg.head == "variational":                 # the moments; the samples at the peaks (peak_parts)
            mu_h, sig_h = self.heatmap.layer.moments(h)    # (B, K, H, W)
            mu_o, sig_o = self.offset.layer.moments(h)     # (B, 6, H, W)
            return VariationalDetection3DHead(probit_logit(mu_h, sig_h), mu_o[:, :3], self.size(h), self.yaw(h),
                                              mu_h, sig_h, sig_o[:, :3], mu_o[:, 3:], sig_o[:, 3:])
        s = self.head_samples(features, h)
        _, p_ale, p_epi = bernoulli_split(torch.sigmoid(s["heat"]))
        off, v_ale, v_epi = gaussian_split(s["offset"], s["offset_log_var"])
        return SampledDetection3DHead(predictive_logit(s["heat"]), off, self.size(h), self.yaw(h), p_ale, p_epi,
                                      v_ale, v_epi)

    def forward(self, x: Tensor, head_noise: Tensor | None = None) -> SpiHead:
        return self.forward_head(self.forward_features(x, head_noise))


def spi_noise_dims(cfg: SpiConfig) -> tuple[int, int]:
    """Noise widths of the heatmap and offset convs of a sampled head (``SampledConvHead.noise_dim``)."""
    if cfg.head == "variational":
        return cfg.num_classes, 6
    return cfg.head_channels, cfg.head_channels


def draw_spi_noise(cfg: SpiConfig, samples: int, generator: torch.Generator | None = None) -> Tensor:
    """(samples, D) noise of a sampled SPI head, as ``Spi.draw_noise``."""
    return torch.cat([draw_head_noise(cfg.head, d, samples, cfg.head_dropout, generator)
                      for d in spi_noise_dims(cfg)], dim=1)


def spi_index_noise(cfg: SpiConfig) -> Tensor:
    """The fixed index of a sampled SPI head (its ``index_noise`` buffer): drawn from ``head_seed``."""
    return draw_spi_noise(cfg, cfg.head_samples, torch.Generator().manual_seed(cfg.head_seed))


def spi_head_type(cfg: SpiConfig) -> type:
    """The head tuple (its fields: the graph's outputs) of an SPI of this config."""
    return {"deterministic": Detection3DHead, "variational": VariationalDetection3DHead}.get(cfg.head,
                                                                                           SampledDetection3DHead)


def noise_in_graph(cfg: SpiConfig) -> bool:
    """Whether the exported graph takes the head's noise index as the input ``head_noise`` (``mc_dropout``)."""
    return cfg.head == "mc_dropout"


def peak_parts(cfg: SpiConfig, heads: Mapping[str, np.ndarray], k: np.ndarray, r: np.ndarray,
               c: np.ndarray, noise: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """A sampled head's uncertainty at N pixels ``(r, c)`` of classes ``k``, from one scan's head outputs (numpy,
    no batch axis): ``score_aleatoric`` / ``score_epistemic`` (N,) nats, ``offset_var_aleatoric`` /
    ``offset_var_epistemic`` (3, N) m^2 (viewing frame). ``variational``: the ``T`` samples of the index (``noise``,
    default ``spi_index_noise``) formed from the moment maps at those pixels, split as the ``mc_dropout`` graph
    splits its samples at every pixel (``bernoulli_split``, ``gaussian_split``); ``mc_dropout``: its per-pixel maps
    read at the pixels."""
    if cfg.head != "variational":
        return {"score_aleatoric": heads["heatmap_aleatoric"][k, r, c],
                "score_epistemic": heads["heatmap_epistemic"][k, r, c],
                "offset_var_aleatoric": heads["offset_var_aleatoric"][:, r, c],
                "offset_var_epistemic": heads["offset_var_epistemic"][:, r, c]}
    z = torch.as_tensor(spi_index_noise(cfg) if noise is None else noise, dtype=torch.float64)
    z_heat, z_off = z[:, :cfg.num_classes], z[:, cfg.num_classes:]                 # (T, K), (T, 6)

    def at(name: str, rows) -> Tensor:                                              # (1, R, N)
        return torch.as_tensor(np.asarray(heads[name][rows, r, c], np.float64))[None]

    heat = at("heatmap_mean", k) + at("heatmap_std", k) * z_heat[:, torch.as_tensor(k, dtype=torch.long)]  # (T, N)
    mean = at("offset", slice(None)) + at("offset_std", slice(None)) * z_off[:, :3, None]          # (T, 3, N)
    log_var = (at("offset_log_var_mean", slice(None)) + at("offset_log_var_std", slice(None))
               * z_off[:, 3:, None]).clamp(-12.0, 6.0)
    _, p_ale, p_epi = bernoulli_split(torch.sigmoid(heat))
    _, v_ale, v_epi = gaussian_split(mean, log_var)
    return {"score_aleatoric": p_ale.numpy(), "score_epistemic": p_epi.numpy(),
            "offset_var_aleatoric": v_ale.numpy(), "offset_var_epistemic": v_epi.numpy()}


MODELS: dict[str, type[nn.Module]] = {"spi": Spi}


def build_model(name: str, cfg: SpiConfig) -> nn.Module:
    """Registry lookup: ``build_model("spi", SpiConfig())``."""
    if name not in MODELS:
        raise SpiError(f"unknown LiDAR model '{name}' (known: {', '.join(MODELS)})")
    return MODELS[name](cfg)


def spi_config(size: str = "default", **overrides) -> SpiConfig:
    """The named size (``default``, ``student``, ``teacher``) with field overrides."""
    if size not in SIZES:
        raise SpiError(f"unknown SPI size '{size}' (known: {', '.join(SIZES)})")
    return SpiConfig(**{**SIZES[size], **overrides})


# ----------------------------------------------------------------------------------------------- losses
def focal_heatmap_loss(logits: Tensor, target: Tensor, alpha: float = 2.0, beta: float = 4.0,
                       class_weights: Tensor | None = None) -> Tensor:
    """CenterNet's penalty-reduced pixel focal loss, summed over pixels and divided by the number of peaks.

    ``target`` (B, K, H, W) in [0, 1] with exactly 1 at object centres; ``class_weights`` (K,) scale each
    class's map (positives and negatives; the normaliser stays the number of peaks). Returns a scalar.
    """
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1.0).float()
    log_p = F.logsigmoid(logits)
    log_1mp = F.logsigmoid(-logits)
    pos_loss = -((1 - p) ** alpha) * log_p * pos
    neg_loss = -((1 - target) ** beta) * (p ** alpha) * log_1mp * (1 - pos)
    per_pixel = pos_loss + neg_loss
    if class_weights is not None:
        per_pixel = per_pixel * class_weights.to(per_pixel)[None, :, None, None]
    return per_pixel.sum() / pos.sum().clamp(min=1.0)


def masked_smooth_l1(pred: Tensor, target: Tensor, weight: Tensor, beta: float = 0.1) -> Tensor:
    """Smooth-L1 summed over channels, averaged over pixels with weight > 0 (weighted mean). Scalar."""
    per_pixel = F.smooth_l1_loss(pred, target, reduction="none", beta=beta).sum(dim=1)  # (B, H, W)
    return (per_pixel * weight).sum() / weight.sum().clamp(min=1.0)


@dataclass(frozen=True)
class SpiLossConfig:
    """Weights of the loss terms."""

    heatmap: float = 1.0
    offset: float = 1.0
    size: float = 1.0
    yaw: float = 1.0
    direction: float = 0.2
    class_weights: tuple[float, ...] = ()      # heatmap weight per class; () = all 1


def spi_loss(outputs: Detection3DHead, targets: dict[str, Tensor],
             cfg: SpiLossConfig = SpiLossConfig()) -> tuple[Tensor, dict[str, float]]:
    """Total loss and its terms of the head ``outputs``. ``targets``: ``heatmap`` (B, K, H, W), ``offset``/``size`` (B, 3, H, W),
    ``yaw`` (B, 3, H, W: sin 2a, cos 2a, direction in {0, 1}) and ``reg_weight`` (B, H, W). The direction term is
    the binary cross-entropy of the direction logit, averaged over the same pixels as the regression."""
    w = targets["reg_weight"]
    terms = {
        "heatmap": focal_heatmap_loss(outputs.heatmap, targets["heatmap"], class_weights=torch.tensor(
            cfg.class_weights) if cfg.class_weights else None),
        "offset": masked_smooth_l1(outputs.offset, targets["offset"], w),
        "size": masked_smooth_l1(outputs.size, targets["size"], w),
        "yaw": masked_smooth_l1(outputs.yaw[:, :2], targets["yaw"][:, :2], w),
        "direction": (F.binary_cross_entropy_with_logits(outputs.yaw[:, 2], targets["yaw"][:, 2], reduction="none")
                      * w).sum() / w.sum().clamp(min=1.0),
    }
    total = sum(getattr(cfg, k) * v for k, v in terms.items())
    return total, {k: float(v.detach()) for k, v in terms.items()}


def sampled_spi_loss(kind: str, samples: dict[str, Tensor], size: Tensor, yaw: Tensor, targets: dict[str, Tensor],
                     cfg: SpiLossConfig = SpiLossConfig()) -> tuple[Tensor, dict[str, float]]:
    """Loss of a sampled SPI head over its ``T`` samples (``Spi.head_samples``; ``size`` and ``yaw`` of the
    deterministic convs). ``variational``: the focal loss of the predictive heatmap (the mean probability) and
    the negative log-likelihood of the offset under the mixture of the samples' Gaussians, so the samples spread
    where that explains the data; ``mc_dropout``: the mean over samples of each sample's losses (dropout training
    with ``T`` masks per step). The offset term is averaged over object pixels with ``reg_weight`` as the
    deterministic loss; size, yaw and direction are the deterministic terms."""
    w = targets["reg_weight"]
    weights = torch.tensor(cfg.class_weights) if cfg.class_weights else None
    p = torch.sigmoid(samples["heat"]).clamp(1e-6, 1.0 - 1e-6)                   # (T, B, K, H, W)
    y, mean, log_var = targets["offset"], samples["offset"], samples["offset_log_var"]
    if kind == "variational":
        q = p.mean(0)
        heat = focal_heatmap_loss(torch.log(q) - torch.log1p(-q), targets["heatmap"], class_weights=weights)
        nll = mixture_gaussian_nll(y, mean, log_var)                                 # (B, 3, H, W)
    else:
        heat = torch.stack([focal_heatmap_loss(torch.log(pt) - torch.log1p(-pt), targets["heatmap"],
                                               class_weights=weights) for pt in p]).mean()
        nll = 0.5 * ((y - mean).square() / log_var.exp() + log_var + math.log(2 * math.pi)).mean(0)
    terms = {
        "heatmap": heat,
        "offset_nll": (nll.sum(1) * w).sum() / w.sum().clamp(min=1.0),
        "size": masked_smooth_l1(size, targets["size"], w),
        "yaw": masked_smooth_l1(yaw[:, :2], targets["yaw"][:, :2], w),
        "direction": (F.binary_cross_entropy_with_logits(yaw[:, 2], targets["yaw"][:, 2], reduction="none")
                      * w).sum() / w.sum().clamp(min=1.0),
    }
    total = (cfg.heatmap * terms["heatmap"] + cfg.offset * terms["offset_nll"] + cfg.size * terms["size"]
             + cfg.yaw * terms["yaw"] + cfg.direction * terms["direction"])
    return total, {k: float(v.detach()) for k, v in terms.items()}
