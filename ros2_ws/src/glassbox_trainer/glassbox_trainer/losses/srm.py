"""Sparse Representation Matching (SRM) feature distillation (Tran, Gabbouj, Iosifidis; digest §4).

Each pixel (the channel vector at one position) of a teacher feature map is coded over a learned,
over-complete dictionary: similarities ``kappa(t, d_m) = sigmoid(t . d_m + c)`` to its ``M = round(mu * C)``
atoms, of which the ``k = max(1, floor(sparsity * M))`` largest are kept (the sparse code). The student, which
may have a different channel count but must have the same spatial size, owns a dictionary with the same
number of atoms and learns two *relative* targets derived from the teacher's code:

- pixel level: cross-entropy of the student's similarity vector (used as logits, as the reference code does)
  against the index of the teacher's strongest atom, averaged over pixels;
- image level: binary cross-entropy between the spatial mean of the student's (dense) similarities and the
  spatial mean of the teacher's sparse code, averaged over atoms and images.

Step 1 of the paper (teacher dictionaries by reconstruction, teacher frozen) is
:meth:`SRMLoss.dictionary_loss`; the trainer runs it for ``srm_dictionary_steps`` before training the student.
Where this differs from the paper: the paper runs SRM as a separate pre-training stage followed by plain KD;
here the SRM term can be used as a weighted term next to the task loss and logit KD in one run (set the KD
and task weights to 0 for the paper's pre-training stage). Pixel and image terms have equal unit weights and
multiple layer pairs are summed, as in the reference code. Dictionaries are training-only and never exported.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SRMError(ValueError):
    """Feature maps do not fit the SRM layer pairing (missing names, spatial sizes differ)."""


class SparseDictionary(nn.Module):
    """An over-complete dictionary of ``atoms`` vectors in ``channels`` dimensions with a scalar intercept."""

    def __init__(self, channels: int, atoms: int, k: int, seed: int = 0):
        super().__init__()
        if not 1 <= k <= atoms:
            raise SRMError(f"top-k must be in [1, atoms={atoms}], got {k}")
        g = torch.Generator().manual_seed(seed)
        bound = math.sqrt(6.0 / channels)                                    # Kaiming-uniform fan-in bound
        self.atoms = nn.Parameter((torch.rand(channels, atoms, generator=g) * 2 - 1) * bound)   # (C, M)
        self.intercept = nn.Parameter(torch.rand(1, generator=g) * 2 - 1)
        self.k = int(k)

    def similarity(self, x: Tensor) -> Tensor:
        """Sigmoid similarities of every pixel to every atom: (B, C, H, W) -> (B, H, W, M)."""
        return torch.sigmoid(torch.einsum("bchw,cm->bhwm", x, self.atoms) + self.intercept)

    def sparse_code(self, x: Tensor) -> Tensor:
        """Similarities with all but the top-k atoms of each pixel set to zero: (B, H, W, M)."""
        sim = self.similarity(x)
        idx = sim.topk(self.k, dim=-1).indices
        mask = torch.zeros_like(sim).scatter_(-1, idx, 1.0)
        return sim * mask

    def reconstruct(self, x: Tensor) -> Tensor:
        """Each pixel rebuilt from its sparse code: (B, C, H, W) -> (B, C, H, W)."""
        return torch.einsum("bhwm,cm->bchw", self.sparse_code(x), self.atoms)


def srm_terms(student_sim: Tensor, teacher_code: Tensor) -> tuple[Tensor, Tensor]:
    """(pixel CE, image BCE) between student similarities and the teacher's sparse code, both (B, H, W, M)."""
    if student_sim.shape != teacher_code.shape:
        raise SRMError(f"student similarities {tuple(student_sim.shape)} and teacher codes "
                       f"{tuple(teacher_code.shape)} differ")
    teacher_code = teacher_code.detach()
    labels = teacher_code.argmax(dim=-1)                                       # (B, H, W)
    pixel = F.cross_entropy(student_sim.flatten(0, 2), labels.flatten())
    pred = student_sim.mean(dim=(1, 2)).clamp(1e-6, 1 - 1e-6)                  # (B, M)
    target = teacher_code.mean(dim=(1, 2))                                     # (B, M), in [0, 1)
    image = F.binary_cross_entropy(pred, target)
    return pixel, image


def atoms_for(channels: int, mu: float, sparsity: float) -> tuple[int, int]:
    """(atoms M, top-k) for a teacher layer with ``channels`` channels: M = round(mu*C), k = max(1, floor(s*M))."""
    atoms = max(int(round(mu * channels)), channels + 1)
    return atoms, max(1, int(math.floor(sparsity * atoms)))


class SRMLoss(nn.Module):
    """SRM over named (student layer, teacher layer) pairs; ``forward(student_feats, teacher_feats)``.

    ``teacher_dicts`` are trained only by :meth:`dictionary_loss` (Step 1); ``student_dicts`` are trained with
    the student (their parameters go to the student's optimiser). Build with :meth:`from_features`.
    """

    def __init__(self, pairs: Sequence[tuple[str, str]], student_channels: Sequence[int],
                 teacher_channels: Sequence[int], mu: float = 2.0, sparsity: float = 0.02, seed: int = 0):
        super().__init__()
        if not pairs:
            raise SRMError("SRM needs at least one (student layer, teacher layer) pair")
        self.pairs = [(str(s), str(t)) for s, t in pairs]
        self.teacher_dicts = nn.ModuleList()
        self.student_dicts = nn.ModuleList()
        for i, (cs, ct) in enumerate(zip(student_channels, teacher_channels)):
            atoms, k = atoms_for(ct, mu, sparsity)
            self.teacher_dicts.append(SparseDictionary(ct, atoms, k, seed=seed + 2 * i))
            self.student_dicts.append(SparseDictionary(cs, atoms, k, seed=seed + 2 * i + 1))

    @classmethod
    def from_features(cls, student_feats: Mapping[str, Tensor], teacher_feats: Mapping[str, Tensor],
                      pairs: Sequence[Sequence[str]] | None = None, mu: float = 2.0, sparsity: float = 0.02,
                      seed: int = 0) -> SRMLoss:
        """Build from one batch of features; ``pairs=None`` pairs every name present in both with equal size."""
        if pairs:
            pairs = [(p[0], p[1]) for p in pairs]
        else:
            pairs = [(n, n) for n in student_feats if n in teacher_feats
                     and student_feats[n].dim() == 4 and student_feats[n].shape[-2:] == teacher_feats[n].shape[-2:]]
        for s, t in pairs:
            cls._check(student_feats, teacher_feats, s, t)
        return cls(pairs, [student_feats[s].shape[1] for s, _ in pairs],
                   [teacher_feats[t].shape[1] for _, t in pairs], mu, sparsity, seed)

    @staticmethod
    def _check(student_feats: Mapping[str, Tensor], teacher_feats: Mapping[str, Tensor], s: str, t: str) -> None:
        if s not in student_feats:
            raise SRMError(f"student has no feature '{s}' (has: {', '.join(student_feats)})")
        if t not in teacher_feats:
            raise SRMError(f"teacher has no feature '{t}' (has: {', '.join(teacher_feats)})")
        fs, ft = student_feats[s], teacher_feats[t]
        if fs.dim() != 4 or ft.dim() != 4:
            raise SRMError(f"SRM needs (B, C, H, W) maps, got {s}: {tuple(fs.shape)}, {t}: {tuple(ft.shape)}")
        if fs.shape[-2:] != ft.shape[-2:]:
            raise SRMError(f"spatial sizes differ: student '{s}' {tuple(fs.shape[-2:])} vs teacher '{t}' "
                           f"{tuple(ft.shape[-2:])}")

    def dictionary_loss(self, teacher_feats: Mapping[str, Tensor]) -> Tensor:
        """Step 1: mean squared reconstruction error of the teacher maps (teacher features detached)."""
        total = teacher_feats[self.pairs[0][1]].new_zeros(())
        for (_, t), d in zip(self.pairs, self.teacher_dicts):
            x = teacher_feats[t].detach().float()
            total = total + F.mse_loss(d.reconstruct(x), x)
        return total

    def forward(self, student_feats: Mapping[str, Tensor], teacher_feats: Mapping[str, Tensor]) -> Tensor:
        total = None
        for (s, t), ds, dt in zip(self.pairs, self.student_dicts, self.teacher_dicts):
            self._check(student_feats, teacher_feats, s, t)
            with torch.no_grad():
                code = dt.sparse_code(teacher_feats[t].detach().float())
            pixel, image = srm_terms(ds.similarity(student_feats[s].float()), code)
            total = pixel + image if total is None else total + pixel + image
        return total


__all__ = ["SRMError", "SRMLoss", "SparseDictionary", "atoms_for", "srm_terms"]
