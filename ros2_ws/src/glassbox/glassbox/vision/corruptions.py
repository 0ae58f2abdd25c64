"""Photometric corruptions used to train and evaluate the refiner (one implementation for every caller).

Every operation acts on torch images (B, C, H, W) with values in [0, ``peak``] (1 for float images; 255 for the
uint8 scale, kept exact in float64) and clips its result to [0, peak]:

- ``brightness`` f: ``x * f`` (torchvision's definition);
- ``contrast`` f: ``f * x + (1 - f) * mean(grey(x))``, the grey mean per image (ITU-R 601 weights; a one-channel
  image is its own grey; torchvision's definition);
- ``hue`` s: rotate the HSV hue by ``s`` turns, value and saturation kept (RGB only);
- ``cast`` (g_R, g_G, g_B): per-channel gains, a colour cast (wrong white balance);
- ``noise`` sigma: additive Gaussian sensor noise of standard deviation ``sigma * peak``;
- ``offset`` o: ``x + o * peak``, a uniform veiling glare (stray light over the whole frame);
- ``glare`` a: ``x + a * peak * exp(-d^2 / (2 r^2))``, a bright veiling blob of radius ``r`` = 0.3 of the shorter
  side around a centre drawn in the middle 60 % of the frame.

Factors may be one number or one per image (the training draw). ``noise`` and ``glare`` draw from a generator
seeded by ``apply_ops``' ``seed``, so every corruption is deterministic per seed.

``SEED_CORRUPTIONS`` are the deterministic test settings of the refiner paper (D4.2 §2.1), which names them
"+30% contrast", "-40% brightness", "+10% hue" without formulas; here they are factors 1.3 and 0.6 and a shift of
0.1 of the circle: contrast +30/40 %, brightness +-30/40 %, hue +-10 %, and "combined" (contrast +20 %,
brightness -20 %, hue +5 %). ``CORRUPTIONS`` extends them to the evaluation set: contrast down, colour casts,
sensor noise, veiling glare (uniform and a blob) and a second combination. ``EVAL_CORRUPTIONS`` are the
``CORRUPTIONS`` (without "clean") as tensor functions, ``corrupt_image`` applies them (or any list of operations)
to numpy images (uint8 or float, (H, W) or (H, W, C)) such as bag frames, and ``random_corruption`` draws a
chain of one to three random operations per image for training. The classical corrections they are compared
with live in ``glassbox.vision.baselines``.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from torch import Tensor


class CorruptionError(ValueError):
    """An unknown corruption or an invalid parameter."""


def adjust_brightness(x: Tensor, factor: Tensor | float, peak: float = 1.0) -> Tensor:
    """``clip(x * factor, 0, peak)``."""
    return (x * _per_image(factor, x)).clamp(0.0, peak)


def adjust_contrast(x: Tensor, factor: Tensor | float, peak: float = 1.0) -> Tensor:
    """``clip(factor * x + (1 - factor) * mean(grey(x)), 0, peak)``, the mean taken per image."""
    if x.shape[1] == 1:
        grey = x[:, 0].mean(dim=(1, 2))[:, None, None, None]
    else:
        grey = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).mean(dim=(1, 2))[:, None, None, None]
    f = _per_image(factor, x)
    return (f * x + (1.0 - f) * grey).clamp(0.0, peak)


def adjust_hue(x: Tensor, shift: Tensor | float, peak: float = 1.0) -> Tensor:
    """Rotate hue by ``shift`` turns (in [-0.5, 0.5]) of RGB images; value and saturation are kept."""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    maxc, _ = x.max(dim=1)
    minc, _ = x.min(dim=1)
    delta = maxc - minc
    sat = torch.where(maxc > 0, delta / maxc.clamp(min=1e-12), torch.zeros_like(maxc))
    safe = delta.clamp(min=1e-12)
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    hue = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = torch.where(delta > 0, (hue / 6.0) % 1.0, torch.zeros_like(hue))
    hue = (hue + _per_image(shift, x)[:, 0]) % 1.0
    # HSV -> RGB with the continuous formulation: channel n takes v - v*s*clamp(min(k, 4-k), 0, 1).
    n = torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype)[None, :, None, None]
    k = (n + hue[:, None] * 6.0) % 6.0
    out = maxc[:, None] - maxc[:, None] * sat[:, None] * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)
    return out.clamp(0.0, peak)


def adjust_cast(x: Tensor, gains: Tensor | tuple[float, ...], peak: float = 1.0) -> Tensor:
    """``clip(x_c * g_c, 0, peak)``; ``gains`` one per channel, (C,), or per image and channel, (B, C)."""
    g = torch.as_tensor(gains, dtype=x.dtype, device=x.device)
    g = g.reshape(-1, x.shape[1], 1, 1) if g.dim() == 2 else g.reshape(1, -1, 1, 1)
    return (x * g).clamp(0.0, peak)


def add_noise(x: Tensor, sigma: Tensor | float, peak: float = 1.0, gen: torch.Generator | None = None) -> Tensor:
    """``clip(x + sigma * peak * n, 0, peak)`` with standard normal ``n`` (drawn in float32 from ``gen``)."""
    n = torch.randn(x.shape, generator=gen, dtype=torch.float32).to(x.dtype)
    return (x + _per_image(sigma, x) * peak * n).clamp(0.0, peak)


def add_offset(x: Tensor, offset: Tensor | float, peak: float = 1.0) -> Tensor:
    """``clip(x + offset * peak, 0, peak)``: uniform veiling glare."""
    return (x + _per_image(offset, x) * peak).clamp(0.0, peak)


def add_glare(x: Tensor, amount: Tensor | float, peak: float = 1.0, gen: torch.Generator | None = None,
              radius: float = 0.3) -> Tensor:
    """``clip(x + amount * peak * exp(-d^2 / (2 r^2)), 0, peak)``: a veiling blob of radius ``r = radius`` times the
    shorter side, centred at a point drawn from ``gen`` in the middle 60 % of each image."""
    b, _, h, w = x.shape
    centre = 0.2 + 0.6 * torch.rand(b, 2, generator=gen, dtype=torch.float32).to(x.dtype)   # (B, 2) as (y, x)
    ys = torch.arange(h, dtype=x.dtype, device=x.device)[None, :, None] / max(h - 1, 1)
    xs = torch.arange(w, dtype=x.dtype, device=x.device)[None, None, :] / max(w - 1, 1)
    dy = (ys - centre[:, 0, None, None]) * h
    dx = (xs - centre[:, 1, None, None]) * w
    blob = torch.exp(-(dy ** 2 + dx ** 2) / (2.0 * (radius * min(h, w)) ** 2))              # (B, H, W)
    return (x + _per_image(amount, x) * peak * blob[:, None]).clamp(0.0, peak)


def _per_image(value: Tensor | float, x: Tensor) -> Tensor:
    if isinstance(value, Tensor):
        return value.to(x.dtype).reshape(-1, 1, 1, 1)
    return torch.full((x.shape[0], 1, 1, 1), float(value), dtype=x.dtype, device=x.device)


_OPS: dict[str, Callable[..., Tensor]] = {"brightness": adjust_brightness, "contrast": adjust_contrast,
                                          "hue": adjust_hue, "cast": adjust_cast, "noise": add_noise,
                                          "offset": add_offset, "glare": add_glare}
_SEEDED = ("noise", "glare")
Ops = tuple[tuple[str, float | tuple[float, ...]], ...]

# The refiner seed's deterministic test corruptions (name -> operations applied in order).
SEED_CORRUPTIONS: dict[str, Ops] = {
    "clean": (),
    "contrast+": (("contrast", 1.3),),
    "contrast++": (("contrast", 1.4),),
    "brightness+": (("brightness", 1.3),),
    "brightness++": (("brightness", 1.4),),
    "brightness-": (("brightness", 0.7),),
    "brightness--": (("brightness", 0.6),),
    "hue+": (("hue", 0.1),),
    "hue-": (("hue", -0.1),),
    "combined": (("contrast", 1.2), ("brightness", 0.8), ("hue", 0.05)),
}

# The evaluation set: the seed's corruptions and the ones a camera meets beyond them.
CORRUPTIONS: dict[str, Ops] = {
    **SEED_CORRUPTIONS,
    "contrast-": (("contrast", 0.7),),
    "contrast--": (("contrast", 0.5),),
    "cast-warm": (("cast", (1.2, 1.0, 0.8)),),
    "cast-cool": (("cast", (0.8, 1.0, 1.2)),),
    "noise": (("noise", 0.03),),
    "noise+": (("noise", 0.06),),
    "offset": (("offset", 0.15),),
    "glare": (("glare", 0.5),),
    "combined-2": (("brightness", 0.7), ("cast", (1.1, 1.0, 0.85)), ("offset", 0.05), ("noise", 0.02)),
}


def _check_op(kind: str, value: float | tuple[float, ...], channels: int) -> None:
    if kind not in _OPS:
        raise CorruptionError(f"unknown corruption kind '{kind}' (known: {', '.join(_OPS)})")
    if kind == "cast":
        if not isinstance(value, (tuple, list)) or len(value) != channels or min(value) < 0:
            raise CorruptionError(f"cast needs {channels} gains >= 0, got {value}")
        return
    if isinstance(value, (tuple, list)):
        raise CorruptionError(f"{kind} takes one number, got {value}")
    if kind == "hue":
        if not -0.5 <= value <= 0.5:
            raise CorruptionError(f"hue shift must lie in [-0.5, 0.5], got {value}")
        if channels != 3:
            raise CorruptionError(f"hue needs RGB images (3 channels), got {channels}")
    elif value < 0:
        raise CorruptionError(f"{kind} parameter must be >= 0, got {value}")


def apply_ops(x: Tensor, ops: Ops, peak: float = 1.0, seed: int = 0) -> Tensor:
    """Apply (kind, parameter) operations in order to images (B, C, H, W) in [0, peak]; the random ones (noise,
    glare) draw from one generator seeded with ``seed``."""
    gen = torch.Generator().manual_seed(int(seed))
    for kind, value in ops:
        _check_op(kind, value, x.shape[1])
        x = _OPS[kind](x, value, peak, gen) if kind in _SEEDED else _OPS[kind](x, value, peak)
    return x


EVAL_CORRUPTIONS: dict[str, Callable[[Tensor], Tensor]] = {
    name: partial(apply_ops, ops=ops) for name, ops in CORRUPTIONS.items() if ops}


# Training draw: kind -> (neutral value, half-range); cast gains are drawn per channel.
RANDOM_KINDS: dict[str, tuple[float, float]] = {
    "brightness": (1.0, 0.5), "contrast": (1.0, 0.5), "hue": (0.0, 0.15), "cast": (1.0, 0.25),
    "noise": (0.0, 0.08), "offset": (0.0, 0.25), "glare": (0.0, 0.7)}


def random_corruption(x: Tensor, gen: torch.Generator, clean_fraction: float = 0.1, max_ops: int = 3,
                      kinds: tuple[str, ...] = tuple(RANDOM_KINDS)) -> Tensor:
    """A chain of one to ``max_ops`` random operations per image of ``x`` (B, C, H, W) in [0, 1], each of a random
    kind and strength (``RANDOM_KINDS``: brightness, contrast, cast in neutral +- half-range, hue +- 0.15 turn,
    noise sigma, offset and glare amount in [0, half-range]); a ``clean_fraction`` of the images stays clean."""
    b = x.shape[0]
    out = x.clone()
    length = torch.randint(1, max_ops + 1, (b,), generator=gen)
    length[torch.rand(b, generator=gen) < clean_fraction] = 0
    for step in range(max_ops):
        kind = torch.randint(0, len(kinds), (b,), generator=gen)
        u = torch.rand(b, generator=gen)                                       # (B,) in [0, 1]
        u_cast = torch.rand(b, x.shape[1], generator=gen)                      # (B, C)
        for k, name in enumerate(kinds):
            sel = (kind == k) & (length > step)
            if not sel.any():
                continue
            neutral, half = RANDOM_KINDS[name]
            if name == "cast":
                out[sel] = adjust_cast(out[sel], neutral + half * (2.0 * u_cast[sel] - 1.0))
            elif name in ("brightness", "contrast", "hue"):
                out[sel] = _OPS[name](out[sel], neutral + half * (2.0 * u[sel] - 1.0))
            elif name in _SEEDED:
                out[sel] = _OPS[name](out[sel], half * u[sel], 1.0, gen)
            else:
                out[sel] = _OPS[name](out[sel], half * u[sel])
    return out


# ---- numpy images (uint8 or float in [0, 1]; (H, W) or (H, W, C)) ----

def to_working_float(img: np.ndarray) -> tuple[np.ndarray, bool]:
    """Working copy: uint8 images stay on their 0..255 scale in float64 (exact products), floats in float32;
    and whether the image was uint8."""
    if img.dtype == np.uint8:
        return img.astype(np.float64), True
    if np.issubdtype(img.dtype, np.floating):
        return img.astype(np.float32), False
    raise CorruptionError(f"images must be uint8 or float in [0, 1], got {img.dtype}")


def from_working_float(x: np.ndarray, was_uint8: bool, dtype: np.dtype) -> np.ndarray:
    """Back to the input type: clipped to the valid range; uint8 rounds half up."""
    if was_uint8:
        return np.floor(np.clip(x, 0.0, 255.0) + 0.5).astype(np.uint8)
    return np.clip(x, 0.0, 1.0).astype(dtype)


def corrupt_image(img: np.ndarray, ops: Ops | str, seed: int = 0) -> np.ndarray:
    """Apply operations (or the ``CORRUPTIONS`` entry named ``ops``) to one numpy image; same dtype and shape."""
    if isinstance(ops, str):
        if ops not in CORRUPTIONS:
            raise CorruptionError(f"unknown corruption '{ops}' (known: {', '.join(CORRUPTIONS)})")
        ops = CORRUPTIONS[ops]
    x, u8 = to_working_float(img)
    planes = x[None, None] if x.ndim == 2 else np.moveaxis(x, -1, 0)[None]           # (1, C, H, W)
    y = apply_ops(torch.from_numpy(np.ascontiguousarray(planes)), ops, 255.0 if u8 else 1.0, seed)[0].numpy()
    return from_working_float(y[0] if x.ndim == 2 else np.moveaxis(y, 0, -1), u8, img.dtype)
