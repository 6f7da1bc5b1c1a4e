"""Label source: the Sentinel-2 L2A scene classification (SCL) of a scene."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from chunkstore import Store

from ._label_rules import SCL_CLASSES, scl_label
from ._label_store import read_window
from ._target import ShardWindow


@dataclass(frozen=True)
class SclLabel:
    array: str  # key of the scene's ``scl`` array

    @property
    def classes(self) -> tuple[str, ...]:
        return SCL_CLASSES

    @property
    def source(self) -> Mapping[str, Any]:
        return {"from": "scl"}

    def read(self, store: Store, window: ShardWindow) -> np.ndarray:
        return scl_label(read_window(store, self.array, window))
