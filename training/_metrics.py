"""Segmentation metrics from a confusion matrix. Pure numpy.

``cm[t, p]`` counts pixels of true class ``t`` predicted as ``p``; pixels whose
label is nodata (255) are not counted. A class with no true and no predicted
pixel has undefined scores (None) and is left out of the means.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from chunkstore import LABEL_NODATA

IGNORE = LABEL_NODATA  # label pixels that count for nothing, in losses and metrics


def confusion(pred: np.ndarray, target: np.ndarray, k: int) -> np.ndarray:
    """(k, k) int64 confusion matrix of integer class maps of equal shape."""
    t = np.asarray(target).ravel().astype(np.int64)
    p = np.asarray(pred).ravel().astype(np.int64)
    keep = t < k
    return np.bincount(t[keep] * k + p[keep], minlength=k * k).reshape(k, k)


def _ratio(num: np.ndarray, den: np.ndarray) -> list[float | None]:
    return [float(a / b) if b else None for a, b in zip(num, den, strict=True)]


def scores(cm: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Per-class IoU, Dice, precision, recall; overall accuracy; means over defined
    classes; and the matrix itself."""
    cm = np.asarray(cm, dtype=np.int64)
    tp = np.diag(cm).astype(np.float64)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    iou = _ratio(tp, tp + fp + fn)
    dice = _ratio(2 * tp, 2 * tp + fp + fn)
    per_class = {name: {"iou": iou[i], "dice": dice[i],
                        "precision": _ratio(tp, tp + fp)[i], "recall": _ratio(tp, tp + fn)[i],
                        "support": int(tp[i] + fn[i])}
                 for i, name in enumerate(classes)}
    total = int(cm.sum())

    def mean(values: list[float | None]) -> float | None:
        v = [x for x in values if x is not None]
        return float(np.mean(v)) if v else None

    return {"miou": mean(iou), "mean_dice": mean(dice),
            "overall_accuracy": float(tp.sum() / total) if total else None,
            "pixels": total, "per_class": per_class, "classes": list(classes),
            "confusion_matrix": cm.tolist()}
