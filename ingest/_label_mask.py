"""Label source: the classes of a finished prediction mask of the scene."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from chunkstore import LABEL_NODATA, Store

from ._label_store import read_window
from ._target import ShardWindow


@dataclass(frozen=True)
class MaskLabel:
    array: str  # key of the mask's ``class`` array
    classes: tuple[str, ...]
    model_id: str
    mask: str  # key of the mask Zarr
    mask_fingerprint: str  # of the mask's inputs: a new prediction is a new source

    @property
    def source(self) -> Mapping[str, Any]:
        return {"from": f"mask:{self.model_id}", "model_id": self.model_id, "mask": self.mask,
                "mask_fingerprint": self.mask_fingerprint}

    def read(self, store: Store, window: ShardWindow) -> np.ndarray:
        data = read_window(store, self.array, window)
        out = np.asarray(data, dtype=np.uint8).copy()  # 255 stays nodata
        out[np.asarray(data) >= len(self.classes)] = LABEL_NODATA
        return out
