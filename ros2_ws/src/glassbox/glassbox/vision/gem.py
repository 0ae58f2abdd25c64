"""GEM RGB-thermal fusion detector (Mazhar, Babuska, Kober, RA-L 2021; D4.2 §5.2) with an anchor-free head.

One backbone per modality (MobileNetV2-like inverted residuals by default, a ResNet-style option) gives feature
maps ``s_rgb`` and ``s_th`` of the same size; thermal input is already warped into the RGB image with the
camera pair's homography (the pipeline does this). Fusion modes:

- ``scalar_avg`` (g_sa, Eq. 1-2): ``w = f(s) * mean(s[:, :16])`` per modality and sample, the mean taken
  without gradient; fused = (w_rgb s_rgb + w_th s_th) / 2. ``scalar_concat`` (g_sc) concatenates instead.
- ``mask_avg`` (g_ma, Eq. 3): a 1-channel sigmoid mask per modality, broadcast over channels, then averaged;
  ``mask_concat`` (g_mc) concatenates.
- ``gumbel`` (g_sf, Eq. 4-8): per (channel, row) a categorical distribution over columns, relaxed with
  Gumbel-Softmax at temperature ``gumbel_tau``; noise is drawn in training only (evaluation uses the noiseless
  softmax so that detections are deterministic); the encodings gate each modality and are concatenated.
- ``rgb`` / ``thermal``: single-modality baselines (one backbone, no fusion).

Differences from the paper, and why:

- Head: CenterNet-style (per-class centre heatmap, box size and sub-pixel offset at ``stride`` 4 or 8), not
  DETR. DETR needs hundreds of epochs and Hungarian matching to converge and is weak on small objects (the
  paper says so); a dense anchor-free head trains in minutes on a CPU, needs no NMS (3x3 peak picking) and
  exports to ONNX as plain convolutions. The fusion stage, the part GEM contributes, is unchanged.
- ``f`` in Eq. 1 is a 1x1 conv, global average pool and linear layer with a softplus output (the reference code
  uses ReLU, which can die at 0 for every input and then switches a sensor off for good).
- Backbones stop at output stride 8 (the paper's stride 32 suits DETR's global attention, not a centre
  heatmap on 320x256 frames) and are trained from scratch (no COCO weights can be downloaded here). With
  ``stride = 4`` the neck adds one feature-pyramid step: the fused stride-8 map is upsampled and added to the
  backbones' stride-4 maps (each scaled by its modality's fusion weight, averaged), so that a pedestrian 10 px
  wide at 320x256 still covers more than one output cell.

*Sampled heads* (``head``: ``variational`` or ``mc_dropout``, ``glassbox.vnn.SampledConvHead``): the three 1x1
output convs are sampled ``head_samples`` times as one batch of the head only; size and offset each also predict
a log-variance (the aleatoric part). Training (``head_samples``) draws fresh noise; inference uses the fixed index
(``index_noise``, drawn from ``head_seed``), so it is deterministic. The decoder reads the deterministic head's
maps; what else the graph returns depends on the kind:

- ``variational`` (``VariationalDetection2DHead``): a sample is ``mu + sigma * eps_t`` with one ``eps`` per output
  channel, the same in every cell, so the moment maps hold every sample. The graph returns them; the heat map as
  the logit of the Gaussian predictive in closed form (``glassbox.vnn.probit_logit``), size and offset at the
  noise's mean; ``peak_parts`` forms the ``T`` samples of the index at the detections' cells, where the score
  entropy and the box variance are split into their aleatoric and epistemic parts. No noise input.
- ``mc_dropout`` (``SampledDetection2DHead``): the masks act on the input channels, so the samples are not affine
  in the noise; the graph takes the index as the input ``head_noise`` (T, D) and returns the predictive (mean
  probability and mean box) and the per-cell parts.

``variational_state`` turns a deterministic model's weights into a sampled model's (the mean convs).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from glassbox.heads import Detection2DHead, SampledDetection2DHead, VariationalDetection2DHead
from glassbox.vnn import (HEAD_KINDS, SampledConvHead, bernoulli_split, draw_head_noise, gaussian_split,
                          probit_logit, sampled_head_state)

FUSIONS = ("scalar_avg", "scalar_concat", "mask_avg", "mask_concat", "gumbel", "rgb", "thermal")


class GemError(ValueError):
    """A GEM input or configuration is invalid."""


@dataclass(frozen=True)
class GemConfig:
    num_classes: int = 3
    fusion: str = "scalar_avg"
    backbone: str = "mobilenetv2"          # or "resnet"
    width_mult: float = 0.5
    head_channels: int = 64
    mean_channels: int = 16                # k in Eq. 1
    gumbel_tau: float = 1.0
    rgb_channels: int = 3
    thermal_channels: int = 1
    stride: int = 8                        # output stride of the head: 8, or 4 with a feature-pyramid step
    head: str = "deterministic"            # or "variational" / "mc_dropout" (sampled heads, module docstring)
    head_samples: int = 8                  # T of a sampled head
    head_dropout: float = 0.2              # channel dropout rate of the mc_dropout head
    head_seed: int = 0                     # seed of the fixed noise index of a sampled head

    def __post_init__(self) -> None:
        if self.head not in ("deterministic", *HEAD_KINDS):
            raise ValueError(f"head must be 'deterministic' or one of {HEAD_KINDS}, got {self.head!r}")
        if self.head_samples < 1:
            raise ValueError(f"head_samples must be >= 1, got {self.head_samples}")
        if self.stride not in (4, 8):
            raise ValueError(f"stride must be 4 or 8, got {self.stride}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if self.backbone not in ("mobilenetv2", "resnet"):
            raise ValueError(f"backbone must be 'mobilenetv2' or 'resnet', got {self.backbone!r}")
        if self.gumbel_tau <= 0:
            raise ValueError(f"gumbel_tau must be > 0, got {self.gumbel_tau}")


def _cbr(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers = [] if expand == 1 else [_cbr(cin, hidden, 1)]
        layers += [_cbr(hidden, hidden, 3, stride, groups=hidden), nn.Conv2d(hidden, cout, 1, bias=False),
                   nn.BatchNorm2d(cout)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x) if self.residual else self.body(x)


def _ch(c: int, mult: float) -> int:
    return max(8, int(round(c * mult / 8)) * 8)


class _Levels(nn.Module):
    """A backbone ``body`` whose first ``split`` layers end at stride 4; ``levels(x)`` = (stride-4, stride-8) maps."""

    body: nn.Sequential
    split: int
    stride4_channels: int

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)

    def levels(self, x: Tensor) -> tuple[Tensor, Tensor]:
        s4 = self.body[: self.split](x)
        return s4, self.body[self.split:](s4)


class MobileNetV2Backbone(_Levels):
    """MobileNetV2 layout up to output stride 8; ends in a 1x1 conv-BN-ReLU6 (non-negative features)."""

    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 3, 1), (6, 96, 2, 1))  # (t, c, n, s)

    def __init__(self, cin: int, mult: float, out_channels: int) -> None:
        super().__init__()
        c = _ch(32, mult)
        layers: list[nn.Module] = [_cbr(cin, c, 3, 2)]
        for t, ch, n, s in self.SETTINGS:
            co = _ch(ch, mult)
            if s == 2 and ch == 32:                      # the stride-4 maps end before the first stride-8 block
                self.split, self.stride4_channels = len(layers), c
            for i in range(n):
                layers.append(InvertedResidual(c, co, s if i == 0 else 1, t))
                c = co
        layers.append(_cbr(c, out_channels, 1))
        self.body = nn.Sequential(*layers)


class ResNetBackbone(_Levels):
    """ResNet-style basic blocks up to output stride 8 (the larger option)."""

    def __init__(self, cin: int, mult: float, out_channels: int) -> None:
        super().__init__()
        from glassbox.vision.bisenet import BasicBlock

        w = [_ch(64, mult), _ch(128, mult), _ch(256, mult)]
        self.body = nn.Sequential(
            _cbr(cin, w[0], 7, 2), BasicBlock(w[0], w[0], 1), BasicBlock(w[0], w[1], 2), BasicBlock(w[1], w[1], 1),
            BasicBlock(w[1], w[2], 2), BasicBlock(w[2], w[2], 1), _cbr(w[2], out_channels, 1))
        self.split, self.stride4_channels = 4, w[1]


class ReliabilityWeight(nn.Module):
    """Eq. 1: ``w = f(s) * mean(s[:, :k])`` per sample, with the mean computed without gradient; (B,)."""

    def __init__(self, channels: int, k: int, hidden: int = 32) -> None:
        super().__init__()
        if channels < k:
            raise GemError(f"Eq. 1 averages the first {k} channels, but the backbone has only {channels}")
        self.k = k
        self.conv = nn.Conv2d(channels, hidden, 1)
        self.fc = nn.Linear(hidden, 1)

    def forward(self, s: Tensor) -> Tensor:
        f = F.softplus(self.fc(F.relu(self.conv(s)).mean(dim=(2, 3))))[:, 0]     # (B,)
        with torch.no_grad():
            level = s[:, : self.k].mean(dim=(1, 2, 3))                           # (B,)
        return f * level.detach()


def gumbel_softmax(logits: Tensor, tau: float, dim: int, noise: bool, generator: torch.Generator | None = None,
                   eps: float = 1e-10) -> Tensor:
    """Relaxed one-hot samples ``softmax((log_softmax(logits) + G) / tau)`` with ``G = -log(-log U)``."""
    logp = torch.log_softmax(logits, dim=dim)
    if noise:
        u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype).to(logits.device)
        u = u.clamp(eps, 1.0 - eps)
        logp = logp - torch.log(-torch.log(u))
    return torch.softmax(logp / tau, dim=dim)


class Gem(nn.Module):
    """``forward(rgb, thermal) -> Detection2DHead(heatmap, size, offset, w_rgb, w_thermal)``; see the module docstring.

    rgb: (B, 3, H, W) in [0, 1]; thermal: (B, 1, H, W) in [0, 1], aligned to the RGB image; H, W divisible by 8.
    Features: ``feat_rgb``, ``feat_thermal`` (backbone maps), ``fused``, ``neck``, masks in the mask modes, and
    the weights ``w_rgb``, ``w_thermal``. With s = ``cfg.stride``: heatmap_logits (B, K, H/s, W/s); size
    (B, 2, H/s, W/s) box width/height in output cells (>= 0); offset (B, 2, H/s, W/s) sub-cell centre offset;
    w_rgb, w_thermal (B,) fusion weights (NaN-free; 1 where the mode has no weight).
    """

    def __init__(self, cfg: GemConfig = GemConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        feat = max(_ch(96, cfg.width_mult), cfg.mean_channels)
        self.feat_channels = feat
        backbone = MobileNetV2Backbone if cfg.backbone == "mobilenetv2" else ResNetBackbone
        self.use_rgb = cfg.fusion != "thermal"
        self.use_thermal = cfg.fusion != "rgb"
        self.backbone_rgb = backbone(cfg.rgb_channels, cfg.width_mult, feat) if self.use_rgb else None
        self.backbone_thermal = backbone(cfg.thermal_channels, cfg.width_mult, feat) if self.use_thermal else None
        fused = 2 * feat if cfg.fusion in ("scalar_concat", "mask_concat", "gumbel") else feat
        if cfg.fusion.startswith("scalar"):
            self.weight_rgb = ReliabilityWeight(feat, cfg.mean_channels)
            self.weight_thermal = ReliabilityWeight(feat, cfg.mean_channels)
        elif cfg.fusion.startswith("mask"):
            self.mask_rgb = nn.Conv2d(feat, 1, 3, padding=1)
            self.mask_thermal = nn.Conv2d(feat, 1, 3, padding=1)
        elif cfg.fusion == "gumbel":
            self.pi_rgb = nn.Conv2d(feat, feat, 1)
            self.pi_thermal = nn.Conv2d(feat, feat, 1)
        hc = cfg.head_channels
        self.neck = nn.Sequential(_cbr(fused, hc, 3), _cbr(hc, hc, 3))
        if cfg.stride == 4:
            c4 = (self.backbone_rgb or self.backbone_thermal).stride4_channels
            self.lateral = nn.Conv2d(c4, hc, 1)
            self.refine = _cbr(hc, hc, 3)
        self.sampled = cfg.head != "deterministic"
        if self.sampled:
            self.heatmap = SampledConvHead(hc, cfg.num_classes, cfg.head, cfg.head_dropout)
            self.size = SampledConvHead(hc, 4, cfg.head, cfg.head_dropout)        # (w, h, log var w, log var h)
            self.offset = SampledConvHead(hc, 4, cfg.head, cfg.head_dropout)      # (dx, dy, log var dx, log var dy)
            nn.init.constant_(self.heatmap.mean_conv.bias, -2.19)
            self.register_buffer("index_noise", index_noise(cfg))
        else:
            self.heatmap = nn.Conv2d(hc, cfg.num_classes, 1)
            self.size = nn.Conv2d(hc, 2, 1)
            self.offset = nn.Conv2d(hc, 2, 1)
            nn.init.constant_(self.heatmap.bias, -2.19)     # sigmoid = 0.1: the CenterNet prior
        self.gumbel_generator: torch.Generator | None = None

    def draw_noise(self, samples: int, generator: torch.Generator | None = None) -> Tensor:
        """Fresh noise of a sampled head: (samples, D), the heads' noise side by side."""
        return draw_gem_noise(self.cfg, samples, generator)

    def variational_state(self, deterministic: dict[str, Tensor]) -> dict[str, Tensor]:
        """A deterministic GEM's state dict as this sampled model's (``glassbox.vnn.sampled_head_state``: the
        output convs into the mean convs)."""
        return sampled_head_state(self.state_dict(), deterministic, ("heatmap", "size", "offset"), self.cfg.head)

    def _check(self, rgb: Tensor, thermal: Tensor) -> None:
        if rgb.dim() != 4 or rgb.shape[1] != self.cfg.rgb_channels:
            raise GemError(f"rgb must be (B, {self.cfg.rgb_channels}, H, W), got {tuple(rgb.shape)}")
        if thermal.dim() != 4 or thermal.shape[1] != self.cfg.thermal_channels:
            raise GemError(f"thermal must be (B, {self.cfg.thermal_channels}, H, W), got {tuple(thermal.shape)}")
        if rgb.shape[0] != thermal.shape[0] or rgb.shape[2:] != thermal.shape[2:]:
            raise GemError(f"rgb {tuple(rgb.shape)} and thermal {tuple(thermal.shape)} must share B, H, W "
                           "(warp thermal into the RGB image first)")
        if not torch.jit.is_tracing() and (rgb.shape[2] % 8 or rgb.shape[3] % 8):
            raise GemError(f"H and W must be divisible by 8, got {tuple(rgb.shape[2:])}")

    @property
    def stride(self) -> int:
        return self.cfg.stride

    def _levels(self, backbone: nn.Module, x: Tensor) -> tuple[Tensor | None, Tensor]:
        """(stride-4 map or None when the head does not use it, stride-8 map) of one backbone."""
        return backbone.levels(x) if self.cfg.stride == 4 else (None, backbone(x))

    def forward_features(self, rgb: Tensor, thermal: Tensor, head_noise: Tensor | None = None) -> dict[str, Tensor]:
        self._check(rgb, thermal)
        cfg, feats = self.cfg, {}
        if self.sampled:
            if head_noise is None:
                head_noise = self.draw_noise(cfg.head_samples) if self.training else self.index_noise
            feats["head_noise"] = head_noise.to(rgb)
        ones = rgb.new_ones(rgb.shape[0])
        r4, s_r = self._levels(self.backbone_rgb, rgb) if self.use_rgb else (None, None)  # s_r: (B, F, H/8, W/8)
        t4, s_t = self._levels(self.backbone_thermal, thermal) if self.use_thermal else (None, None)
        w_r, w_t = ones, ones
        # Single-modality baselines keep the unused input in the graph (weight 0), so that every exported
        # model has the same two inputs.
        if cfg.fusion == "rgb":
            fused = s_r
            w_t = thermal.mean(dim=(1, 2, 3)) * 0.0
        elif cfg.fusion == "thermal":
            fused = s_t
            w_r = rgb.mean(dim=(1, 2, 3)) * 0.0
        elif cfg.fusion.startswith("scalar"):
            w_r, w_t = self.weight_rgb(s_r), self.weight_thermal(s_t)
            a, b = w_r[:, None, None, None] * s_r, w_t[:, None, None, None] * s_t
            fused = 0.5 * (a + b) if cfg.fusion == "scalar_avg" else torch.cat([a, b], dim=1)
        elif cfg.fusion.startswith("mask"):
            m_r, m_t = torch.sigmoid(self.mask_rgb(s_r)), torch.sigmoid(self.mask_thermal(s_t))  # (B, 1, h, w)
            feats["mask_rgb"], feats["mask_thermal"] = m_r, m_t
            w_r, w_t = m_r.mean(dim=(1, 2, 3)), m_t.mean(dim=(1, 2, 3))
            fused = 0.5 * (m_r * s_r + m_t * s_t) if cfg.fusion == "mask_avg" else \
                torch.cat([m_r * s_r, m_t * s_t], dim=1)
        else:
            noise = self.training
            e_r = gumbel_softmax(self.pi_rgb(s_r), cfg.gumbel_tau, 3, noise, self.gumbel_generator)
            e_t = gumbel_softmax(self.pi_thermal(s_t), cfg.gumbel_tau, 3, noise, self.gumbel_generator)
            w_r, w_t = (e_r * s_r).mean(dim=(1, 2, 3)), (e_t * s_t).mean(dim=(1, 2, 3))
            fused = torch.cat([e_r * s_r, e_t * s_t], dim=1)
        if s_r is not None:
            feats["feat_rgb"] = s_r
        if s_t is not None:
            feats["feat_thermal"] = s_t
        feats["fused"] = fused
        neck = self.neck(fused)
        if cfg.stride == 4:
            # One pyramid step: the stride-4 maps of the modalities in use, weighted like the fusion.
            if r4 is not None and t4 is not None:
                low = 0.5 * (w_r[:, None, None, None] * r4 + w_t[:, None, None, None] * t4)
            else:
                low = r4 if r4 is not None else t4
            neck = self.refine(F.interpolate(neck, scale_factor=2.0, mode="nearest") + self.lateral(low))
        feats["neck"] = neck
        feats["w_rgb"], feats["w_thermal"] = w_r, w_t
        return feats

    def head_samples(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        """A sampled head's ``T`` samples: heat logits (T, B, K, h, w); box (w, h, dx, dy) and its log-variance,
        each (T, B, 4, h, w)."""
        n, z = features["neck"], features["head_noise"]
        d = [h.noise_dim for h in (self.heatmap, self.size, self.offset)]
        z_heat, z_size, z_off = torch.split(z, d, dim=1)
        return box_samples(self.heatmap(n, z_heat), self.size(n, z_size), self.offset(n, z_off))

    def forward_head(self, features: dict[str, Tensor]) -> GemHead:
        n = features["neck"]
        if not self.sampled:
            return Detection2DHead(self.heatmap(n), F.relu(self.size(n)), torch.sigmoid(self.offset(n)),
                                   features["w_rgb"], features["w_thermal"])
        if self.cfg.head == "variational":         # the moments; the samples at the peaks (peak_parts)
            (mu_h, sig_h), (mu_s, sig_s), (mu_o, sig_o) = (c.layer.moments(n) for c in (self.heatmap, self.size,
                                                                                         self.offset))
            return VariationalDetection2DHead(probit_logit(mu_h, sig_h), F.relu(mu_s[:, :2]),
                                              torch.sigmoid(mu_o[:, :2]), features["w_rgb"], features["w_thermal"],
                                              mu_h, sig_h, mu_s, sig_s, mu_o, sig_o)
        s = self.head_samples(features)
        p, p_ale, p_epi = bernoulli_split(torch.sigmoid(s["heat"]))
        box, v_ale, v_epi = gaussian_split(s["box"], s["box_log_var"])
        p = p.clamp(1e-6, 1.0 - 1e-6)
        return SampledDetection2DHead(torch.log(p) - torch.log1p(-p), box[:, :2], box[:, 2:], features["w_rgb"],
                                      features["w_thermal"], p_ale, p_epi, v_ale, v_epi)

    def forward(self, rgb: Tensor, thermal: Tensor, head_noise: Tensor | None = None) -> Detection2DHead:
        return self.forward_head(self.forward_features(rgb, thermal, head_noise))


def head_noise_dims(cfg: GemConfig) -> tuple[int, int, int]:
    """Noise widths of the heatmap, size and offset heads of a sampled head (``SampledConvHead.noise_dim``)."""
    if cfg.head == "variational":
        return cfg.num_classes, 4, 4
    return (cfg.head_channels,) * 3


def draw_gem_noise(cfg: GemConfig, samples: int, generator: torch.Generator | None = None) -> Tensor:
    """(samples, D) noise of a sampled GEM head, as ``Gem.draw_noise``."""
    return torch.cat([draw_head_noise(cfg.head, d, samples, cfg.head_dropout, generator)
                      for d in head_noise_dims(cfg)], dim=1)


def index_noise(cfg: GemConfig) -> Tensor:
    """The fixed index of a sampled GEM head (its ``index_noise`` buffer): drawn from ``head_seed``."""
    return draw_gem_noise(cfg, cfg.head_samples, torch.Generator().manual_seed(cfg.head_seed))


GemHead = Detection2DHead | VariationalDetection2DHead | SampledDetection2DHead


def gem_head_type(cfg: GemConfig) -> type:
    """The head tuple (its fields: the graph's outputs) of a GEM of this config."""
    return {"deterministic": Detection2DHead, "variational": VariationalDetection2DHead}.get(cfg.head,
                                                                                           SampledDetection2DHead)


def noise_in_graph(cfg: GemConfig) -> bool:
    """Whether the exported graph takes the head's noise index as the input ``head_noise`` (``mc_dropout``)."""
    return cfg.head == "mc_dropout"


def box_samples(heat: Tensor, size: Tensor, offset: Tensor) -> dict[str, Tensor]:
    """Samples ``(T, ..., C, *cells)`` of the three convs -> heat logits, box (w, h, dx, dy) and its log-variance."""
    box = torch.cat([F.relu(size[..., :2, :, :]), torch.sigmoid(offset[..., :2, :, :])], dim=-3)
    log_var = torch.cat([size[..., 2:, :, :], offset[..., 2:, :, :]], dim=-3).clamp(-12.0, 8.0)
    return {"heat": heat, "box": box, "box_log_var": log_var}


def peak_parts(cfg: GemConfig, heads: Mapping[str, np.ndarray], k: np.ndarray, ys: np.ndarray, xs: np.ndarray,
               noise: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """A sampled head's uncertainty at N cells ``(ys, xs)`` of classes ``k``, from one image's head outputs (numpy,
    no batch axis): ``score_aleatoric`` / ``score_epistemic`` (N,) nats, ``box_var_aleatoric`` /
    ``box_var_epistemic`` (4, N) of (w, h, dx, dy) in output cells^2. ``variational``: the ``T`` samples of the
    index (``noise``, default ``index_noise``) formed from the moment maps at those cells and split as the
    ``mc_dropout`` graph splits its samples in every cell; ``mc_dropout``: its per-cell maps read at the cells."""
    if cfg.head != "variational":
        return {"score_aleatoric": heads["heatmap_aleatoric"][k, ys, xs],
                "score_epistemic": heads["heatmap_epistemic"][k, ys, xs],
                "box_var_aleatoric": heads["box_var_aleatoric"][:, ys, xs],
                "box_var_epistemic": heads["box_var_epistemic"][:, ys, xs]}
    z = torch.as_tensor(index_noise(cfg) if noise is None else noise, dtype=torch.float64)
    z_heat, z_size, z_off = torch.split(z, list(head_noise_dims(cfg)), dim=1)        # (T, K), (T, 4), (T, 4)

    def at(name: str, rows) -> Tensor:                                              # (1, R, N)
        return torch.as_tensor(np.asarray(heads[name][rows, ys, xs], np.float64))[None]

    every = slice(None)
    heat = at("heatmap_mean", k) + at("heatmap_std", k) * z_heat[:, torch.as_tensor(k, dtype=torch.long)]  # (T, N)
    size = at("size_mean", every) + at("size_std", every) * z_size[:, :, None]                  # (T, 4, N)
    off = at("offset_mean", every) + at("offset_std", every) * z_off[:, :, None]
    s = box_samples(heat, size[..., None], off[..., None])                         # a trailing unit axis: (T, 4, N, 1)
    _, p_ale, p_epi = bernoulli_split(torch.sigmoid(heat))
    _, v_ale, v_epi = gaussian_split(s["box"][..., 0], s["box_log_var"][..., 0])
    return {"score_aleatoric": p_ale.numpy(), "score_epistemic": p_epi.numpy(),
            "box_var_aleatoric": v_ale.numpy(), "box_var_epistemic": v_epi.numpy()}


def display_share(w_rgb: Tensor, w_thermal: Tensor, eps: float = 1e-12) -> Tensor:
    """Relative RGB share ``w_rgb / (w_rgb + w_th)`` for display (0.5 when both are 0)."""
    total = w_rgb + w_thermal
    return torch.where(total > eps, w_rgb / total.clamp(min=eps), torch.full_like(total, 0.5))
