"""Metrics of a model over every labelled pixel of a split, and a confusion-matrix PNG."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from chunkstore import InputError, Store

from ._metrics import confusion
from ._split import SPLITS


def split_confusion(adapter: Any, stream: Any, patches: Sequence[Any], patch: int,
                    batch: int = 8, progress: bool = False, desc: str = "eval") -> np.ndarray:
    """Confusion matrix of ``adapter`` (a TorchAdapter) over ``patches`` (whole chunks,
    ``patch`` pixels square) read by ``stream`` (a PatchStream)."""
    from tqdm import tqdm

    from ._stream import to_device

    k = adapter.spec.num_classes
    cm = np.zeros((k, k), dtype=np.int64)
    adapter.module.eval()
    for hb in tqdm(stream.batches(patches, patch, batch), total=-(-len(patches) // batch),
                   desc=desc, unit="batch", disable=not progress, leave=False):
        x, y = to_device(hb, stream, adapter.device, adapter.spec)
        pred = adapter.probabilities(x).argmax(dim=1)
        cm += confusion(pred.cpu().numpy(), y.cpu().numpy(), k)
    return cm


def confusion_png(cm: np.ndarray, classes: Sequence[str], title: str = "") -> bytes:
    """Row-normalized confusion matrix as a PNG (true classes down, predicted across)."""
    from PIL import Image, ImageDraw

    k = len(classes)
    cell, left, top = 64, 110, 40 + (18 if title else 0)
    img = Image.new("RGB", (left + k * cell + 10, top + k * cell + 30), "white")
    d = ImageDraw.Draw(img)
    if title:
        d.text((10, 8), title, fill="black")
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    for i, name in enumerate(classes):
        d.text((8, top + i * cell + cell // 2 - 6), name[:16], fill="black")
        d.text((left + i * cell + 4, top - 16), name[:10], fill="black")
        for j in range(k):
            v = share[i, j]
            shade = int(255 * (1 - v))
            x0, y0 = left + j * cell, top + i * cell
            d.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=(shade, shade, 255),
                        outline="grey")
            d.text((x0 + 6, y0 + cell // 2 - 12), f"{v:.2f}",
                   fill="white" if v > 0.5 else "black")
            d.text((x0 + 6, y0 + cell // 2 + 2), f"{cm[i, j]}", fill="white" if v > 0.5
                   else "black")
    d.text((left, top + k * cell + 8), "predicted ->   (rows: true class, row-normalized)",
           fill="black")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def evaluate_checkpoint(store: Store, model: Store, collections: Sequence[str] | None = None,
                        split: str = "test", *, batch: int = 8, workers: int = 8,
                        progress: bool = True, device: str = "auto") -> dict[str, Any]:
    """Scores of the checkpoint at ``model`` over every labelled pixel of ``split``
    (the shards stored with the checkpoint); also written to ``MODEL/eval/``. The model
    runs on ``device`` (``auto``: a GPU if torch sees one), bf16 autocast on a GPU."""
    import json

    from models import load_checkpoint, resolve

    from ._checkpoints import SPLIT, reader, saved_split
    from ._data import labelled_scenes
    from ._metrics import scores
    from ._plan import make_plan
    from ._stream import PatchStream

    read = reader(model)
    adapter = load_checkpoint(read, model.uri, resolve(device))
    if split not in SPLITS:
        raise InputError(f"--split {split!r}: use {', '.join(SPLITS)}")
    shards = saved_split(model)
    if shards is None:
        raise InputError(f"{model.uri} has no {SPLIT}: evaluate a checkpoint written by "
                         "`satchunk train`")
    names = sorted({s[0] for s in shards[split]})
    if collections:
        unknown = [c for c in collections if c not in names]
        if unknown:
            raise InputError(f"the {split} split of {model.uri} has no shard of "
                             f"{', '.join(unknown)} (it covers {', '.join(names)})")
        names = list(collections)
    scenes = labelled_scenes(store, names)
    if tuple(scenes[0].classes) != adapter.spec.classes:
        raise InputError(f"the labels of {', '.join(names)} have classes "
                         f"{list(scenes[0].classes)}, the model {list(adapter.spec.classes)}")
    keep = set(names)
    plan = make_plan(store, scenes, 0,
                     split={k: [s for s in v if s[0] in keep] for k, v in shards.items()})
    stream = PatchStream(store, plan.scenes, adapter.spec, threads=workers,
                         pin=adapter.runtime.on_gpu)
    try:
        cm = split_confusion(adapter, stream, plan.patches(split),
                             max(s.chunk for s in plan.scenes), batch, progress,
                             f"evaluate {split}")
    finally:
        stream.close()
    result = {"model": model.uri, "model_id": adapter.spec.model_id, "split": split,
              "device": str(adapter.device), "collections": names,
              "shards": len(plan.split[split]), **scores(cm, adapter.spec.classes)}
    model.write_bytes(f"eval/{split}.json", json.dumps(result, indent=1).encode())
    model.write_bytes(f"eval/{split}_confusion.png",
                      confusion_png(cm, adapter.spec.classes,
                                    f"{adapter.spec.model_id} {split}: mIoU "
                                    f"{result['miou']:.3f}" if result["miou"] is not None
                                    else split))
    result["files"] = [model.url(f"eval/{split}.json"), model.url(f"eval/{split}_confusion.png")]
    return result
