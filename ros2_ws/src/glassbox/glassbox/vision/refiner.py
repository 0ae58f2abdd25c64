"""Pseudo-active neural sensory refiner (Passalis & Tefas, ICIP 2021; OpenDR D4.2 §2.1).

A ~14k-parameter, fully differentiable pre-processing network ``h`` placed in front of an unchanged downstream
model ``f``, which then sees ``f(h(x))``. Three stages, each conditioned on a differentiable soft histogram
(sigmoid memberships averaged over pixels, N_K = 100 bins):

1. global shift and scale from the histogram of the channel-mean image (Eq. 3);
2. per-channel shift and scale from the histogram of stage 1's output (Eq. 4);
3. local multiplicative refinement ``x''' = x'' * (1 + tanh(g([x''; tile(tanh(h3 W_p))])))`` (Eqs. 5-6), where ``g``
   is two 5x5 convolutions (16, 8 filters) and two 5x5 transposed convolutions (16, C filters), tanh on all.

Inputs are float images in [0, 1], shape (B, C, H, W). Where this implementation differs from the paper, and why:

- Every histogram bin has a bias inside the sigmoid (``sigm(v_k^T x + b_k)``; the paper writes none). Without it,
  all 100 bins of the 1-channel histogram are monotone sigmoids through 0.5 at x = 0 and cannot tell a dark
  image from a bright one apart from their slope; with it, bin k is initialised as a soft step at intensity
  ``c_k``, so ``h`` starts as a soft cumulative histogram. Cost: 300 parameters (14,643 instead of 14,343).
- ``g`` downsamples by 2 in each convolution and upsamples by 2 in each transposed convolution (the paper gives
  no strides). The gate is a smooth multiplier, and the strides cut its cost ~4x at 720p; its output is cropped
  to the input size, so any H, W work.
- Histograms are taken over a nearest-neighbour resample of the image to a fixed 64x64 grid (4,096 pixels),
  not over every pixel: a subsample has the same expected histogram, and 100 sigmoid bins over all 0.9M pixels
  of a 720p frame would cost more than the rest of the refiner (``hist_grid = 0`` restores the full sum).
- The denominators ``1 + h^T W`` are clamped below at ``min_denominator`` (the paper gives no guard).
- The shift/scale layers and the last transposed convolution start at zero, so the refiner starts as the exact
  identity (tanh(0) = 0).
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
    proj_dim: int = 8            # N_P
    kernel_size: int = 5
    conv_channels: tuple[int, int] = (16, 8)
    stages: tuple[int, ...] = (1, 2, 3)   # cumulative ablation switch: (1,), (1, 2) or (1, 2, 3)
    min_denominator: float = 0.05
    bin_sharpness: float = 10.0  # initial slope of the sigmoid bins (per unit intensity)
    hist_grid: int = 64          # histograms read a nearest-neighbour resample to this square grid (0: all pixels)

    def __post_init__(self) -> None:
        if self.stages not in ((1,), (1, 2), (1, 2, 3)):
            raise ValueError(f"stages must be (1,), (1, 2) or (1, 2, 3), got {self.stages}")
        if self.in_channels < 1 or self.num_bins < 1 or self.proj_dim < 1:
            raise ValueError("in_channels, num_bins and proj_dim must be positive")
        if self.min_denominator <= 0:
            raise ValueError(f"min_denominator must be > 0, got {self.min_denominator}")


class SoftHistogram(nn.Module):
    """Differentiable histogram: ``h_k = mean_ij sigm(v_k^T x_ij + b_k)``, shape (B, N_K), entries in (0, 1)."""

    def __init__(self, channels: int, num_bins: int, sharpness: float, seed: int, grid: int = 0) -> None:
        super().__init__()
        self.grid = grid
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
        # x: (B, C, H, W) -> memberships (B, N_K, h, w) -> spatial mean (B, N_K)
        if self.grid:
            x = F.interpolate(x, size=(self.grid, self.grid), mode="nearest")
        u = torch.sigmoid(F.conv2d(x, self.codebook[:, :, None, None], self.bias))
        return u.mean(dim=(2, 3))


class Refiner(nn.Module):
    """The three-stage refiner; ``forward(x) -> RefinedImage(x''')``, the input's shape."""

    def __init__(self, cfg: RefinerConfig = RefinerConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        c, k, p = cfg.in_channels, cfg.num_bins, cfg.proj_dim
        self.hist1 = SoftHistogram(1, k, cfg.bin_sharpness, seed=1, grid=cfg.hist_grid)
        self.w11 = nn.Parameter(torch.zeros(k, 1))   # global shift
        self.w12 = nn.Parameter(torch.zeros(k, 1))   # global scale
        self.hist2 = SoftHistogram(c, k, cfg.bin_sharpness, seed=2, grid=cfg.hist_grid)
        self.w21 = nn.Parameter(torch.zeros(k, c))   # per-channel shift
        self.w22 = nn.Parameter(torch.zeros(k, c))   # per-channel scale
        self.hist3 = SoftHistogram(c, k, cfg.bin_sharpness, seed=3, grid=cfg.hist_grid)
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

    def _check(self, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.cfg.in_channels:
            raise RefinerError(f"expected (B, {self.cfg.in_channels}, H, W), got {tuple(x.shape)}")

    def forward_features(self, x: Tensor) -> dict[str, Tensor]:
        """Named intermediate maps: the output of each stage and the gate ``tanh(g(.))``."""
        self._check(x)
        eps = self.cfg.min_denominator
        feats: dict[str, Tensor] = {}
        h1 = self.hist1(x.mean(dim=1, keepdim=True))                              # (B, N_K)
        shift1 = (h1 @ self.w11)[:, :, None, None]                               # (B, 1, 1, 1)
        scale1 = (1.0 + h1 @ self.w12).clamp(min=eps)[:, :, None, None]
        x1 = (x - shift1) / scale1
        feats["stage1"] = x1
        if 2 not in self.cfg.stages:
            return feats
        h2 = self.hist2(x1)
        shift2 = (h2 @ self.w21)[:, :, None, None]                               # (B, C, 1, 1)
        scale2 = (1.0 + h2 @ self.w22).clamp(min=eps)[:, :, None, None]
        x2 = (x1 - shift2) / scale2
        feats["stage2"] = x2
        if 3 not in self.cfg.stages:
            return feats
        code = torch.tanh(self.hist3(x2) @ self.wp)                              # (B, N_P)
        tiled = code[:, :, None, None].expand(-1, -1, x2.shape[2], x2.shape[3])  # (B, N_P, H, W)
        y = torch.cat([x2, tiled], dim=1)                                        # (B, C + N_P, H, W)
        for name, layer in self.g.items():
            y = torch.tanh(layer(y))
            if name != "deconv2":
                feats[f"g_{name}"] = y
        gate = y[:, :, : x2.shape[2], : x2.shape[3]]                             # (B, C, H, W) in (-1, 1)
        feats["gate"] = gate
        feats["stage3"] = x2 * (1.0 + gate)
        return feats

    def forward_head(self, features: dict[str, Tensor]) -> RefinedImage:
        return RefinedImage(features[f"stage{self.cfg.stages[-1]}"])

    def forward(self, x: Tensor) -> RefinedImage:
        return self.forward_head(self.forward_features(x))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
