"""Losses over class logits (N, K, H, W) and labels (N, H, W); 255 is ignored."""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from ._metrics import IGNORE

LOSSES = ("ce", "focal-dice")


def make_loss(name: str, weight: torch.Tensor | None = None, gamma: float = 2.0) -> Any:
    """``ce``: cross-entropy; ``focal-dice``: focal loss (gamma 2) + soft Dice."""
    if name == "ce":
        return lambda logits, y: F.cross_entropy(logits, y, weight=weight, ignore_index=IGNORE)
    if name == "focal-dice":
        return lambda logits, y: focal(logits, y, weight, gamma) + soft_dice(logits, y)
    raise ValueError(f"loss {name!r}: use {' or '.join(LOSSES)}")


def focal(logits: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None,
          gamma: float = 2.0) -> torch.Tensor:
    valid = y != IGNORE
    ce = F.cross_entropy(logits, y.masked_fill(~valid, 0), weight=weight, reduction="none")
    pt = torch.exp(-F.cross_entropy(logits, y.masked_fill(~valid, 0), reduction="none"))
    loss = (1 - pt) ** gamma * ce
    return loss[valid].sum() / valid.sum().clamp(min=1)


def soft_dice(logits: torch.Tensor, y: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - mean over classes present in the batch of the soft Dice coefficient."""
    k = logits.shape[1]
    valid = (y != IGNORE).unsqueeze(1)
    p = torch.softmax(logits.float(), dim=1) * valid
    onehot = F.one_hot(y.masked_fill(~valid[:, 0], 0), k).permute(0, 3, 1, 2) * valid
    inter = (p * onehot).sum(dim=(0, 2, 3))
    denom = p.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
    present = onehot.sum(dim=(0, 2, 3)) > 0
    dice = (2 * inter + eps) / (denom + eps)
    return 1 - dice[present].mean() if present.any() else logits.sum() * 0
