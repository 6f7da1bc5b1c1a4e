"""What a person reads of each job's result: the CLI's lines (``--json`` prints the
result itself)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from chunkstore import Store


def _done(r: dict[str, Any], exists: str) -> str:
    return exists if r["status"] == "exists" else f"{r['written_shards']} shard(s) written"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def ingested(results: list[dict[str, Any]]) -> Iterator[str]:
    for r in results:
        yield (f"{r['collection']}/{r['item']}: {r['shape'][0]} bands x {r['shape'][1]} x "
               f"{r['shape'][2]} px, {r['shards']} shard(s), "
               f"{_done(r, 'already ingested')} in {r['seconds']} s")


def labelled(results: list[dict[str, Any]]) -> Iterator[str]:
    for r in results:
        total = sum(r["class_pixels"].values()) or 1
        shares = ", ".join(f"{k} {100 * v / total:.1f}%" for k, v in r["class_pixels"].items())
        yield (f"{r['collection']}/{r['item']}: label from {r['source']} ({shares}); "
               f"{_done(r, 'already labelled')} in {r['seconds']} s")


def predicted(results: list[dict[str, Any]]) -> Iterator[str]:
    if results:
        yield f"model on {results[0]['runs_on']}"
    for r in results:
        yield (f"{r['collection']}/{r['item']} -> {r['mask']} "
               f"({_done(r, 'already predicted')} in {r['seconds']} s)")


def exported_onnx(res: dict[str, Any]) -> Iterator[str]:
    yield (f"wrote {res['onnx']} and {res['sidecar']} (max |p_onnx - p_torch| = "
           f"{res['max_abs_diff']:.1e} on a batch of {res['batch_checked']})")


def exported(res: dict[str, Any]) -> Iterator[str]:
    yield (f"{res['out']}: {res['product']} of {res['collection']}/{res['item']} by "
           f"{res['model_id']}, {res['shape'][2]} x {res['shape'][1]} px, overviews "
           f"{res['overviews']}, {res['bytes'] / 1e6:.1f} MB in {res['seconds']} s")


def vectorized(res: dict[str, Any]) -> Iterator[str]:
    per = ", ".join(f"{k} {v}" for k, v in res["per_class"].items()) or "none"
    yield f"{res['out']}: {res['polygons']} polygon(s) ({per}) in {res['seconds']} s"


def epoch(row: dict[str, Any]) -> str:
    return (f"epoch {row['epoch']}: loss {_num(row['train_loss'])}, val mIoU "
            f"{_num(row['val_miou'])}, {row['patches_per_second']} patches/s")


def trained(result: dict[str, Any]) -> Iterator[str]:
    stop = " (early stop)" if result["early_stopped"] else ""
    yield (f"best val mIoU {result['best_val_miou']:.4f} at epoch {result['best_epoch']} of "
           f"{result['epochs_run']}{stop}; model: {result['out']} (satchunk predict --model "
           f"{result['out']})")


def evaluated(result: dict[str, Any]) -> Iterator[str]:
    yield (f"{result['model_id']} on {result['split']} ({result['shards']} shard(s), "
           f"{result['pixels']} px): mIoU {_num(result['miou'])}, overall accuracy "
           f"{_num(result['overall_accuracy'])}")
    for cname, m in result["per_class"].items():
        cells = "  ".join(f"{k} {m[k]:.3f}" if m[k] is not None else f"{k} -"
                          for k in ("iou", "dice", "precision", "recall"))
        yield f"  {cname:<16} {cells}  support {m['support']}"
    yield "written: " + ", ".join(result["files"])


def catalog(rows: list[dict[str, Any]], st: Store, collection: str | None) -> Iterator[str]:
    if not rows:
        yield f"no items in {st.describe()}" + (f" collection {collection}" if collection
                                                 else "")
        return
    cells = [["collection", "item", "datetime", "shape", "crs", "est.cloud%"]]
    for r in rows:
        cells.append([r["collection"], r["item"], str(r["datetime"]),
                      "x".join(str(v) for v in r["shape"] or []), r["crs"],
                      "" if r["cloud_cover"] is None else f"{r['cloud_cover']:.1f}"])
    yield from _columns(cells)


def _columns(cells: list[list[str]]) -> Iterator[str]:
    """Lines of ``cells``, each column as wide as its widest cell."""
    widths = [max(len(c) for c in col) for col in zip(*cells, strict=True)]
    for row in cells:
        yield "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
