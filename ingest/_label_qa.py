"""Label source: the Landsat QA band of a scene, decoded by its bit layout."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from chunkstore import InputError, Store

from ._label_rules import QA_CLASSES, QA_LAYOUT_NAMES, qa_label, qa_layout_from_names
from ._label_store import read_window
from ._target import ShardWindow


@dataclass(frozen=True)
class QaLabel:
    array: str  # key of the scene's ``qa`` array
    layout: str  # c2 | c1 | pre

    @property
    def classes(self) -> tuple[str, ...]:
        return QA_CLASSES

    @property
    def source(self) -> Mapping[str, Any]:
        return {"from": f"qa:{self.layout}", "layout": self.layout,
                "layout_name": QA_LAYOUT_NAMES[self.layout]}

    def read(self, store: Store, window: ShardWindow) -> np.ndarray:
        return qa_label(read_window(store, self.array, window), self.layout)


def qa_source(array: str, layout: str, source_files: Iterable[str], scene: str) -> QaLabel:
    """The QA label of ``scene`` (``collection/item``) with bit layout ``layout``; ``auto``
    tells it from the names of the files the scene was ingested from."""
    if layout == "auto":
        names = [str(n) for n in source_files]
        found = qa_layout_from_names(names)
        if found is None:
            qa_files = [n for n in names if "QA" in n.upper()] or names
            raise InputError(
                f"scene {scene}: cannot tell the QA bit layout from its source file "
                f"names ({', '.join(qa_files) or 'none recorded'}): pass --qa-layout c2 "
                "(Collection 2 QA_PIXEL), c1 (Collection 1 BQA) or pre (pre-collection "
                "BQA)")
        layout = found
    return QaLabel(array, layout)
