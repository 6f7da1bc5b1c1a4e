"""What every label source gives. Pure: no I/O.

A label source is one kind of input a scene's ``label`` is made from: a class raster
or polygons (read at ingest), or Landsat QA bits, Sentinel-2 SCL, spectral indices or
a finished prediction mask (arrays already in the store, read by ``satchunk
label``). Each kind lives in its own ``_label_<kind>.py``; its pure rules (bit
decoding, the SCL table, index thresholds) in :mod:`._label_rules`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from ._target import ShardWindow


class LabelSource(Protocol):
    """A picklable description of a label's input; workers call :meth:`read`."""

    @property
    def classes(self) -> tuple[str, ...]:
        """The class names; class id ``k`` is ``classes[k]``."""
        ...

    @property
    def source(self) -> Mapping[str, Any]:
        """What the label is made from: ``from`` (``qa:c2``, ``scl``, ``indices``,
        ``mask:<model-id>``, ``raster``, ``polygons``) and what else identifies it."""
        ...

    def read(self, store: Any, window: ShardWindow) -> np.ndarray:
        """The uint8 label (class ids, 255 = unlabelled) of one shard window of the
        scene grid; ``store`` (a ``chunkstore.Store``, with credentials; not imported
        here, which keeps this module pure) holds the scene."""
        ...
