"""BiSeNet v1 (Yu et al., ECCV 2018) with the lightweight VGG-like context path of Tzelepi et al. (D4.2 §2.4).

Structure: a spatial path (three 3x3 stride-2 conv-BN-ReLU, 1/8 resolution); a context path (VGG-like: five
blocks of two conv-BN-ReLU and a 2x2 max-pool; or a ResNet-18-style path) whose 1/16 and 1/32 outputs pass
through attention refinement modules (ARM: global pool, 1x1 conv, BN, sigmoid, channel product), the 1/32 one
also multiplied by its global-average "tail"; a feature fusion module (FFM: concatenation, conv-BN-ReLU, channel
attention, residual add); a 1x1 classifier at 1/8 upsampled x8; two auxiliary 1x1 heads on the context features
for training.

Differences from the papers, and why: the VGG channel widths exist only in a figure of the paper, so they are a
configuration (default 16-32-64-128-128, sized for embedded CPUs); the ResNet-18 option's widths are
configurable too (64-128-256-512 is the standard). The FFM outputs ``fuse_channels`` features and a separate 1x1
classifier produces the class scores (the reference code makes the FFM output the classes directly), so the
fused map is a class-agnostic feature seam for probes and distillation. Inputs must have H and W divisible by
32 (the pipeline resizes to such a size).

``output_stride = 4`` adds a *detail step* for thin classes (poles, people: 2-4 px wide at 320x256, under one
cell of 1/8): the fused map upsampled x2 plus a residual computed from the spatial path's 1/4 map, classified at
1/4 and upsampled x4. The residual's last batch norm starts at zero scale, so a stride-8 model's weights load
into it (``DETAIL_MODULES`` are the only new ones) and start as that model, up to the order of the bilinear
upsamplings.

A *sampled classifier* (``head``: ``variational`` or ``mc_dropout``, ``glassbox.vnn.SampledConvHead``) evaluates
the 1x1 classifier for ``head_samples`` network samples at the output stride, as one batch of the classifier
only; the softmax of each sample is averaged there, and the log of that mean and the mutual information between
label and sample (the epistemic part of the predictive entropy) are upsampled to the input
(``SampledDenseLogits``). The noise is the input ``head_noise``; without it the fixed index of ``head_seed``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from glassbox.heads import DenseLogits, SampledDenseLogits
from glassbox.vnn import HEAD_KINDS, SampledConvHead, draw_head_noise, sampled_head_state


class BiSeNetError(ValueError):
    """A BiSeNet input or configuration is invalid."""


@dataclass(frozen=True)
class BiSeNetConfig:
    num_classes: int = 2
    in_channels: int = 3
    context: str = "vgg"                                           # "vgg" or "resnet18"
    vgg_widths: tuple[int, ...] = (16, 32, 64, 128, 128)
    resnet_widths: tuple[int, ...] = (64, 128, 256, 512)
    spatial_channels: tuple[int, ...] = (32, 64, 64)
    fuse_channels: int = 64
    output_stride: int = 8                                         # 8, or 4 with the detail step
    head: str = "deterministic"                                    # or "variational" / "mc_dropout"
    head_samples: int = 8
    head_dropout: float = 0.2
    head_seed: int = 0

    def __post_init__(self) -> None:
        if self.head not in ("deterministic", *HEAD_KINDS):
            raise ValueError(f"head must be 'deterministic' or one of {HEAD_KINDS}, got {self.head!r}")
        if self.output_stride not in (4, 8):
            raise ValueError(f"output_stride must be 4 or 8, got {self.output_stride}")
        if self.context not in ("vgg", "resnet18"):
            raise ValueError(f"context must be 'vgg' or 'resnet18', got {self.context!r}")
        if self.context == "vgg" and len(self.vgg_widths) != 5:
            raise ValueError(f"vgg_widths needs 5 entries, got {self.vgg_widths}")
        if self.context == "resnet18" and len(self.resnet_widths) != 4:
            raise ValueError(f"resnet_widths needs 4 entries, got {self.resnet_widths}")
        if len(self.spatial_channels) != 3 or self.num_classes < 2:
            raise ValueError("spatial_channels needs 3 entries and num_classes must be >= 2")


def conv_bn_relu(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class VggContext(nn.Module):
    """Five [conv-BN-ReLU, conv-BN-ReLU, max-pool] blocks; returns the 1/16 and 1/32 outputs (after pooling)."""

    def __init__(self, cin: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        blocks, c = [], cin
        for w in widths:
            blocks.append(nn.Sequential(conv_bn_relu(c, w), conv_bn_relu(w, w), nn.MaxPool2d(2)))
            c = w
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = (widths[3], widths[4])

    def forward(self, x: Tensor, feats: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        for i, block in enumerate(self.blocks):
            x = block(x)
            feats[f"context{i + 1}"] = x
        return feats["context4"], feats["context5"]


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn_relu(cin, cout, 3, stride), nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(cout))
        self.skip = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.body(x) + self.skip(x))


class ResNet18Context(nn.Module):
    """ResNet-18 layout: 7x7/2 stem, max-pool, four stages of two basic blocks; returns the 1/16 and 1/32 maps."""

    def __init__(self, cin: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn_relu(cin, widths[0], 7, 2), nn.MaxPool2d(3, 2, 1))
        stages, c = [], widths[0]
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(c, w, stride), BasicBlock(w, w, 1)))
            c = w
        self.stages = nn.ModuleList(stages)
        self.out_channels = (widths[2], widths[3])

    def forward(self, x: Tensor, feats: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            x = stage(x)
            feats[f"context{i + 2}"] = x
        return feats["context4"], feats["context5"]


class AttentionRefinement(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.attn = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels),
                                  nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        return x * self.attn(x.mean(dim=(2, 3), keepdim=True))


class FeatureFusion(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.fuse = conv_bn_relu(cin, cout, 1)
        self.attn = nn.Sequential(nn.Conv2d(cout, max(cout // 4, 4), 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(max(cout // 4, 4), cout, 1), nn.Sigmoid())

    def forward(self, parts: list[Tensor]) -> Tensor:
        f = self.fuse(torch.cat(parts, dim=1))
        return f + f * self.attn(f.mean(dim=(2, 3), keepdim=True))


class BiSeNet(nn.Module):
    """``forward(x) -> DenseLogits(logits (B, K, H, W))``; ``forward_aux(features)`` gives the two auxiliary logits."""

    def __init__(self, cfg: BiSeNetConfig = BiSeNetConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        s1, s2, s3 = cfg.spatial_channels
        self.spatial = nn.Sequential(conv_bn_relu(cfg.in_channels, s1, 3, 2), conv_bn_relu(s1, s2, 3, 2),
                                     conv_bn_relu(s2, s3, 3, 2))
        self.context = VggContext(cfg.in_channels, cfg.vgg_widths) if cfg.context == "vgg" else \
            ResNet18Context(cfg.in_channels, cfg.resnet_widths)
        c16, c32 = self.context.out_channels
        self.arm16 = AttentionRefinement(c16)
        self.arm32 = AttentionRefinement(c32)
        self.ffm = FeatureFusion(s3 + c16 + c32, cfg.fuse_channels)
        self.sampled = cfg.head != "deterministic"
        if self.sampled:
            self.classifier = SampledConvHead(cfg.fuse_channels, cfg.num_classes, cfg.head, cfg.head_dropout)
            self.register_buffer("index_noise", bisenet_index_noise(cfg))
        else:
            self.classifier = nn.Conv2d(cfg.fuse_channels, cfg.num_classes, 1)
        self.aux16 = nn.Conv2d(c16, cfg.num_classes, 1)
        self.aux32 = nn.Conv2d(c32, cfg.num_classes, 1)
        if cfg.output_stride == 4:
            last = nn.BatchNorm2d(cfg.fuse_channels)
            nn.init.zeros_(last.weight)
            self.detail = nn.Sequential(conv_bn_relu(s2, cfg.fuse_channels, 3),
                                        nn.Conv2d(cfg.fuse_channels, cfg.fuse_channels, 1, bias=False), last)

    DETAIL_MODULES = ("detail.",)

    def forward_features(self, x: Tensor, head_noise: Tensor | None = None) -> dict[str, Tensor]:
        if x.dim() != 4 or x.shape[1] != self.cfg.in_channels:
            raise BiSeNetError(f"expected (B, {self.cfg.in_channels}, H, W), got {tuple(x.shape)}")
        if not torch.jit.is_tracing() and (x.shape[2] % 32 or x.shape[3] % 32):
            raise BiSeNetError(f"H and W must be divisible by 32, got {tuple(x.shape[2:])}")
        feats: dict[str, Tensor] = {}
        if self.sampled:
            if head_noise is None:
                head_noise = self.classifier.draw(self.cfg.head_samples) if self.training else self.index_noise
            feats["head_noise"] = head_noise.to(x)
        sp4 = self.spatial[:2](x)                                                # (B, s2, H/4, W/4)
        sp = self.spatial[2](sp4)                                                # (B, s3, H/8, W/8)
        feats["spatial"] = sp
        c16, c32 = self.context(x, feats)                                        # (B, c16, H/16, W/16), (B, c32, H/32, W/32)
        a32 = self.arm32(c32) * c32.mean(dim=(2, 3), keepdim=True)
        a16 = self.arm16(c16)
        size = sp.shape[2:]
        feats["arm16"] = F.interpolate(a16, size=size, mode="bilinear", align_corners=False)
        feats["arm32"] = F.interpolate(a32, size=size, mode="bilinear", align_corners=False)
        feats["fused"] = self.ffm([sp, feats["arm16"], feats["arm32"]])         # (B, F, H/8, W/8)
        if self.cfg.output_stride == 4:
            up = F.interpolate(feats["fused"], size=sp4.shape[2:], mode="bilinear", align_corners=False)
            feats["fused4"] = up + self.detail(sp4)                               # (B, F, H/4, W/4)
        return feats

    def head_samples(self, features: dict[str, Tensor]) -> Tensor:
        """A sampled classifier's logits at the output stride, (T, B, K, h, w)."""
        top = features["fused4"] if self.cfg.output_stride == 4 else features["fused"]
        return self.classifier(top, features["head_noise"])

    def forward_head(self, features: dict[str, Tensor]) -> DenseLogits | SampledDenseLogits:
        s = self.cfg.output_stride
        if self.sampled:
            p = torch.softmax(self.head_samples(features), dim=2)                # (T, B, K, h, w)
            mean = p.mean(0)
            log_mean = torch.log(mean.clamp(min=1e-8))
            aleatoric = -(p * torch.log(p.clamp(min=1e-8))).sum(2).mean(0)
            epistemic = (-(mean * log_mean).sum(1) - aleatoric).clamp(min=0.0)[:, None]
            up = [F.interpolate(t, scale_factor=float(s), mode="bilinear", align_corners=False)
                  for t in (log_mean, epistemic)]
            return SampledDenseLogits(*up)
        top = features["fused4"] if s == 4 else features["fused"]
        return DenseLogits(F.interpolate(self.classifier(top), scale_factor=float(s), mode="bilinear",
                                         align_corners=False))

    def forward_aux(self, features: dict[str, Tensor]) -> list[Tensor]:
        return [F.interpolate(head(features[name]), scale_factor=8.0, mode="bilinear", align_corners=False)
                for head, name in ((self.aux16, "arm16"), (self.aux32, "arm32"))]

    def forward(self, x: Tensor, head_noise: Tensor | None = None) -> DenseLogits:
        return self.forward_head(self.forward_features(x, head_noise))

    def variational_state(self, deterministic: dict[str, Tensor]) -> dict[str, Tensor]:
        """A deterministic BiSeNet's state dict as this sampled model's (the classifier into its mean conv)."""
        return sampled_head_state(self.state_dict(), deterministic, ("classifier",), self.cfg.head)


def bisenet_index_noise(cfg: BiSeNetConfig) -> Tensor:
    """The fixed noise index of a sampled classifier (its ``index_noise`` buffer), drawn from ``head_seed``."""
    dim = cfg.num_classes if cfg.head == "variational" else cfg.fuse_channels
    return draw_head_noise(cfg.head, dim, cfg.head_samples, cfg.head_dropout,
                           torch.Generator().manual_seed(cfg.head_seed))
