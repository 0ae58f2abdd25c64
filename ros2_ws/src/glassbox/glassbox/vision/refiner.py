"""Pseudo-active neural sensory refiner (Passalis & Tefas, ICIP 2021; OpenDR D4.2 §2.1).

A ~14.6k-parameter, fully differentiable pre-processing network ``h`` placed in front of an unchanged downstream
model ``f``, which then sees ``f(h(x))``. Three stages, each conditioned on a differentiable soft histogram
(sigmoid memberships averaged over pixels, N_K = 100 bins):

1. global shift and scale from the histogram of the channel-mean image (Eq. 3);
2. per-channel shift and scale from the histogram of stage 1's output (Eq. 4);
3. local multiplicative refinement ``x''' = x'' * (1 + tanh(g([x''; tile(tanh(h3 W_p))])))`` (Eqs. 5-6), where ``g``
   is two 5x5 convolutions (16, 8 filters) and two 5x5 transposed convolutions (16, C filters), tanh on all.

Inputs are float images in [0, 1], shape (B, C, H, W). Where this implementation differs from the paper, and why:

- **Range statistics next to the histograms.** Stages 1 and 2 also read each channel's exact minimum, maximum
  and mean (and a constant), with linear weights: stage 2's shift and scale are
  ``h2 W + [min, max, mean, 1] a + tanh([h2; stats] W_h) W_o`` per channel. A soft histogram only locates the
  ends of the range to a bin width, and a linear map of it cannot express ``shift = min, scale = max - min``;
  with the statistics the exact per-channel min-max stretch (which inverts darkening, contrast loss and colour
  casts of a full-range photograph to 8-bit precision) is one setting of ``a``, and the small tanh layer
  (N_H = 16 units) lets the correction depend non-linearly on the histogram (e.g. undo a brightening whose
  clipped maximum says nothing). The minimum and maximum are taken over every pixel (one reduction), so the
  stretch is exact at any resolution.
- **Predicted at low resolution, applied at full resolution** (``grid`` > 0): the histograms and the gate ``g``
  read a bilinear resample of the image to ``grid`` x ``grid``; the global shifts and scales are applied to the
  full image and the gate is bilinearly upsampled to it. The cost of ``h`` then hardly grows with the image
  (a few element-wise passes), where the seed's full-resolution ``g`` cost as much as the downstream model.
- N_P = 4 (the seed: 8) pays for the statistics and the tanh layer: 14,563 parameters (the seed's 14,343).
- Every histogram bin has a bias inside the sigmoid (``sigm(v_k^T x + b_k)``; the paper writes none). Without it,
  all 100 bins of the 1-channel histogram are monotone sigmoids through 0.5 at x = 0 and cannot tell a dark
  image from a bright one apart from their slope; with it, bin k is initialised as a soft step at intensity
  ``c_k``, so ``h`` starts as a soft cumulative histogram.
- ``g`` downsamples by 2 in each convolution and upsamples by 2 in each transposed convolution (the paper gives
  no strides); its output is cropped to its input size, so any size works.
- The denominators ``1 + ...`` are clamped below at ``min_denominator`` (the paper gives no guard).
- The shift/scale weights and the last transposed convolution start at zero, so the refiner starts as the exact
  identity (tanh(0) = 0); with ``init_stretch`` (the shipped training) stage 2 starts as the exact min-max
  stretch instead, so training starts from the best classical correction and learns where to depart from it
  (clipped brightening, noise, glare, images that do not span the range).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from glassbox.heads import RefinedImage


class RefinerError(ValueError):
    """A refiner input or configuration is invalid."""


@dataclass(frozen=True)
class RefinerConfig:
    in_channels: int = 3
    num_bins: int = 100          # N_K
    proj_dim: int = 4            # N_P
    hidden: int = 16             # N_H, tanh units of stage 2's head
    kernel_size: int = 5
    conv_channels: tuple[int, int] = (16, 8)
    stages: tuple[int, ...] = (1, 2, 3)   # cumulative ablation switch: (1,), (1, 2) or (1, 2, 3)
    min_denominator: float = 0.05
    bin_sharpness: float = 10.0  # initial slope of the sigmoid bins (per unit intensity)
    grid: int = 64               # histograms and gate read a bilinear resample to grid x grid (0: the image itself)
    init_stretch: bool = False   # start stage 2 as the exact per-channel min-max stretch instead of the identity

    def __post_init__(self) -> None:
        if self.stages not in ((1,), (1, 2), (1, 2, 3)):
            raise ValueError(f"stages must be (1,), (1, 2) or (1, 2, 3), got {self.stages}")
        if self.in_channels < 1 or self.num_bins < 1 or self.proj_dim < 1 or self.hidden < 1:
            raise ValueError("in_channels, num_bins, proj_dim and hidden must be positive")
        if self.min_denominator <= 0:
            raise ValueError(f"min_denominator must be > 0, got {self.min_denominator}")
        if self.grid < 0 or 0 < self.grid < 4:
            raise ValueError(f"grid must be 0 or >= 4, got {self.grid}")


class SoftHistogram(nn.Module):
    """Differentiable histogram: ``h_k = mean_ij sigm(v_k^T x_ij + b_k)``, shape (B, N_K), entries in (0, 1)."""

    def __init__(self, channels: int, num_bins: int, sharpness: float, seed: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        direction = torch.randn(num_bins, channels, generator=gen)
        direction = direction / direction.norm(dim=1, keepdim=True)
        if channels == 1:
            direction = direction.abs()
        centres = torch.rand(num_bins, channels, generator=gen) if channels > 1 else \
            torch.linspace(0.0, 1.0, num_bins + 2)[1:-1].unsqueeze(1)
        self.codebook = nn.Parameter(sharpness * direction)                       # (N_K, C)
        self.bias = nn.Parameter(-(sharpness * direction * centres).sum(dim=1))  # (N_K,)

    def forward(self, x: Tensor) -> Tensor:
        # x: (B, C, H, W) -> memberships (B, N_K, H, W) -> spatial mean (B, N_K)
        u = torch.sigmoid(F.conv2d(x, self.codebook[:, :, None, None], self.bias))
        return u.mean(dim=(2, 3))


NUM_STATS = 4   # per channel: min, max, mean, 1


class Refiner(nn.Module):
    """The three-stage refiner; ``forward(x) -> RefinedImage(x''')``, the input's shape."""

    def __init__(self, cfg: RefinerConfig = RefinerConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        c, k, p, s = cfg.in_channels, cfg.num_bins, cfg.proj_dim, NUM_STATS
        self.hist1 = SoftHistogram(1, k, cfg.bin_sharpness, seed=1)
        self.w11 = nn.Parameter(torch.zeros(k + s, 1))   # global shift from [h1; stats of the channel means]
        self.w12 = nn.Parameter(torch.zeros(k + s, 1))   # global scale
        self.hist2 = SoftHistogram(c, k, cfg.bin_sharpness, seed=2)
        self.w21 = nn.Parameter(torch.zeros(k, c))       # per-channel shift from h2
        self.w22 = nn.Parameter(torch.zeros(k, c))       # per-channel scale from h2
        self.a21 = nn.Parameter(torch.zeros(s))          # per-channel shift from the channel's own statistics
        self.a22 = nn.Parameter(torch.zeros(s))          # per-channel scale from them
        self.wh = nn.Linear(k + c * s, cfg.hidden)        # tanh head over [h2; every channel's statistics]
        self.wo1 = nn.Parameter(torch.zeros(cfg.hidden, c))
        self.wo2 = nn.Parameter(torch.zeros(cfg.hidden, c))
        self.hist3 = SoftHistogram(c, k, cfg.bin_sharpness, seed=3)
        self.wp = nn.Parameter(torch.empty(k, p))
        nn.init.normal_(self.wp, std=1.0 / math.sqrt(k))
        ks, pad = cfg.kernel_size, cfg.kernel_size // 2
        c1, c2 = cfg.conv_channels
        self.g = nn.ModuleDict({
            "conv1": nn.Conv2d(c + p, c1, ks, stride=2, padding=pad),
            "conv2": nn.Conv2d(c1, c2, ks, stride=2, padding=pad),
            "deconv1": nn.ConvTranspose2d(c2, c1, ks, stride=2, padding=pad, output_padding=1),
            "deconv2": nn.ConvTranspose2d(c1, c, ks, stride=2, padding=pad, output_padding=1),
        })
        nn.init.zeros_(self.g["deconv2"].weight)
        nn.init.zeros_(self.g["deconv2"].bias)
        if cfg.init_stretch:      # shift = min, scale = 1 + (max - min - 1): the min-max stretch
            with torch.no_grad():
                self.a21.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
                self.a22.copy_(torch.tensor([-1.0, 1.0, 0.0, -1.0]))

    def _check(self, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.cfg.in_channels:
            raise RefinerError(f"expected (B, {self.cfg.in_channels}, H, W), got {tuple(x.shape)}")

    def forward_features(self, x: Tensor) -> dict[str, Tensor]:
        """Named intermediate maps: the output of each stage (full resolution) and the gate ``tanh(g(.))`` (at the
        ``grid`` resolution) with ``g``'s hidden maps."""
        self._check(x)
        eps, grid = self.cfg.min_denominator, self.cfg.grid
        feats: dict[str, Tensor] = {}
        small = F.interpolate(x, size=(grid, grid), mode="bilinear", align_corners=False) if grid else x
        ones = torch.ones_like(x[:, :, 0, 0])                                    # (B, C)
        stats = torch.stack([x.amin(dim=(2, 3)), x.amax(dim=(2, 3)), small.mean(dim=(2, 3)), ones], dim=2)
        # stats: (B, C, 4) = per-channel min, max, mean, 1 (every affine stage maps the first three exactly)
        f1 = torch.cat([self.hist1(small.mean(dim=1, keepdim=True)), stats.mean(dim=1)], dim=1)  # (B, N_K + 4)
        shift1 = (f1 @ self.w11)[:, :, None, None]                               # (B, 1, 1, 1)
        scale1 = (1.0 + f1 @ self.w12).clamp(min=eps)[:, :, None, None]
        x1, small1 = (x - shift1) / scale1, (small - shift1) / scale1
        stats1 = torch.cat([(stats[..., :3] - shift1[..., 0]) / scale1[..., 0], stats[..., 3:]], dim=2)
        feats["stage1"] = x1
        if 2 not in self.cfg.stages:
            return feats
        h2 = self.hist2(small1)                                                   # (B, N_K)
        hidden = torch.tanh(self.wh(torch.cat([h2, stats1.flatten(1)], dim=1)))  # (B, N_H)
        shift2 = (h2 @ self.w21 + stats1 @ self.a21 + hidden @ self.wo1)[:, :, None, None]          # (B, C, 1, 1)
        scale2 = (1.0 + h2 @ self.w22 + stats1 @ self.a22 + hidden @ self.wo2).clamp(min=eps)[:, :, None, None]
        x2, small2 = (x1 - shift2) / scale2, (small1 - shift2) / scale2
        feats["stage2"] = x2
        if 3 not in self.cfg.stages:
            return feats
        code = torch.tanh(self.hist3(small2) @ self.wp)                               # (B, N_P)
        tiled = code[:, :, None, None].expand(-1, -1, small2.shape[2], small2.shape[3])  # (B, N_P, h, w)
        y = torch.cat([small2, tiled], dim=1)                                         # (B, C + N_P, h, w)
        for name, layer in self.g.items():
            y = torch.tanh(layer(y))
            if name != "deconv2":
                feats[f"g_{name}"] = y
        gate = y[:, :, : small2.shape[2], : small2.shape[3]]                          # (B, C, h, w) in (-1, 1)
        feats["gate"] = gate
        if grid:
            gate = F.interpolate(gate, size=x.shape[2:], mode="bilinear", align_corners=False)  # (B, C, H, W)
        feats["stage3"] = x2 * (1.0 + gate)
        return feats

    def forward_head(self, features: dict[str, Tensor]) -> RefinedImage:
        return RefinedImage(features[f"stage{self.cfg.stages[-1]}"])

    def forward(self, x: Tensor) -> RefinedImage:
        return self.forward_head(self.forward_features(x))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
