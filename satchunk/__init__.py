"""satchunk's composition root: one function per job (what the CLI, the demo and the
benchmarks all call), where a job runs (:class:`Place`), the local Dask cluster and the
bundled sample scenes. Names load on first use, so ``satchunk --help`` stays quick."""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "Place": "place", "DEFAULT_PLACE": "place",
    "IngestOptions": "scene_jobs", "ingest_job": "scene_jobs",
    "LabelOptions": "scene_jobs", "label_job": "scene_jobs",
    "PredictOptions": "scene_jobs", "predict_job": "scene_jobs",
    "ExportOptions": "scene_jobs", "export_job": "scene_jobs",
    "VectorizeOptions": "scene_jobs", "vectorize_job": "scene_jobs",
    "catalog_rows": "scene_jobs", "catalog_item": "scene_jobs",
    "TrainOptions": "model_jobs", "train_job": "model_jobs",
    "EvaluateOptions": "model_jobs", "evaluate_job": "model_jobs",
    "export_onnx_job": "model_jobs", "checkpoint_store": "model_jobs",
    "dask_client": "cluster", "visible_gpus": "cluster", "sample_scenes": "demo",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'satchunk' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
