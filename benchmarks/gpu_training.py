"""The GPU section of P4: does the loader keep a GPU busy while it trains?

On a labelled mosaic of the real Sentinel-2 crop (13 bands, uint16, 256^2 inner chunks,
spectral weak labels) in a local-directory store: the balanced loader's patches/s
(host batches of 64, as they cross to the GPU), the training step's patches/s on one
batch held on the GPU (forward, cross-entropy, backward, AdamW; bf16 autocast,
channels-last), and ``--steps`` steps streamed from the store as ``satchunk train``
runs them. GPU busy share = steps x (step time on a held batch) / streamed wall time.
Targets: loader >= 1.2 x the step rate for the resnet34 UNet at batch 64; busy >= 85 %.

``prepare`` (any machine with satchunk installed: it ingests and labels the crop)
writes a seed folder: the crop's DN, labels and georeferencing (about 20 MB). ``run``
(the GPU machine, which needs torch, numpy and the Zarr/Dask/xarray/pystac packages;
no rasterio) builds the mosaic in a local store from it and measures. Without a CUDA
GPU it says so and skips (``--device cpu`` runs the same steps as a smoke test).

    python -m benchmarks.gpu_training prepare DIR
    python -m benchmarks.gpu_training run DIR [--size 8192] [--models unet:resnet34,unet,segformer]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

CROP = 1024
COLLECTION, ITEM = "gpu-train", "mosaic"


def prepare(seed: Path) -> None:
    """The seed: a 1024^2 crop of the ingested, labelled Sentinel-2 crop (all bands)."""
    import zarr

    from benchmarks._results import COLLECTION as BENCH
    from benchmarks._results import bench_env
    from benchmarks.training import labelled_store
    from chunkstore import read_scene, scene_key

    seed.mkdir(parents=True, exist_ok=True)
    with bench_env() as bench:
        store = labelled_store(bench, shard=512, chunk=256)
        item = store.list_dirs(f"stac/{BENCH}")[0].rstrip("/").rsplit("/", 1)[-1]
        info = read_scene(store, scene_key(BENCH, item))
        g = zarr.open_group(store.zarr_store(info.key, read_only=True), mode="r",
                            zarr_format=3)
        o = (min(info.shape[1:]) - CROP) // 2
        dn = np.asarray(g["reflectance"][:, o:o + CROP, o:o + CROP])
        lab = np.asarray(g["label"][o:o + CROP, o:o + CROP])
    np.savez_compressed(seed / "crop.npz", dn=dn, label=lab)
    (seed / "seed.json").write_text(json.dumps({
        "bands": list(info.bands), "dtype": info.dtype, "scale": info.scale,
        "offset": info.offset, "fill": info.fill, "crs_wkt": info.crs_wkt,
        "transform": list(info.transform), "classes": list(info.label_classes)}))
    mb = sum(f.stat().st_size for f in seed.rglob("*") if f.is_file()) / 1e6
    print(f"seed in {seed}: {mb:.1f} MB")


def _mosaic(seed: Path, work: Path, size: int) -> tuple[Any, Any]:
    """The ``size``^2 labelled mosaic (the crop mirrored, no seams) in a local store at
    ``work``; (store, SceneRef)."""
    from chunkstore import (
        SceneSchema,
        ShardGrid,
        add_label,
        create_scene,
        open_store,
        scene_key,
        write_label_shard,
        write_shard,
    )
    from inference._tiling import reflect
    from models import Radiometry
    from training import SceneRef

    meta = json.loads((seed / "seed.json").read_text())
    crop = np.load(seed / "crop.npz")
    dn, lab = crop["dn"], crop["label"]
    shutil.rmtree(work, ignore_errors=True)
    store = open_store(str(work))
    grid = ShardGrid(size, size, 2048, 256)
    schema = SceneSchema(tuple(meta["bands"]), meta["dtype"], meta["scale"], meta["offset"],
                         meta["fill"] or 0, meta["crs_wkt"], tuple(meta["transform"]), grid)
    key = scene_key(COLLECTION, ITEM)
    create_scene(store, key, schema)
    add_label(store, key, meta["classes"], {"from": "benchmark crop"})

    def one(s: tuple[int, int]) -> None:
        r0, c0, h, w = grid.window(*s)
        iy, ix = reflect(np.arange(r0, r0 + h), CROP), reflect(np.arange(c0, c0 + w), CROP)
        write_shard(store, key, schema, s[0], s[1], dn[:, iy][:, :, ix], stats=(h * w, 0))
        write_label_shard(store, key, s[0], s[1], lab[iy][:, ix])

    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        list(pool.map(one, grid.shards()))
    ref = SceneRef(COLLECTION, ITEM, key, tuple(meta["bands"]), (size, size), 2048, 256,
                   Radiometry(meta["scale"], meta["offset"], meta["fill"]),
                   tuple(meta["classes"]), dtype=meta["dtype"])
    return store, ref


def run(seed: Path, size: int, models: list[str], batch: int, steps: int, threads: int,
        device: str = "cuda", out: Path | None = None) -> dict[str, Any]:
    import torch

    from training import PlannedPatch, chunk_weights, draw, make_plan

    result: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds")}
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU here: the GPU section of P4 is skipped")
        return {**result, "skipped": "no CUDA GPU"}
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "satchunk-gpu-train-bench"
    t0 = time.perf_counter()
    store, ref = _mosaic(seed, work, size)
    result.update(gpu=torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
                  cores=os.cpu_count(), torch=torch.__version__, batch=batch,
                  host_threads=threads, scene=f"{size}^2 x {len(ref.bands)} bands uint16, "
                  "256^2 chunks, local directory", fill_s=round(time.perf_counter() - t0, 1))
    print(f"{result['gpu']}: mosaic {size}^2 in {result['fill_s']} s", flush=True)
    plan = make_plan(store, [ref], 0)
    c = plan.candidates["train"]
    w = chunk_weights(c.counts, "balanced")

    def planned(n: int, epoch: int) -> list[PlannedPatch]:
        d = draw(w, n, np.random.default_rng([0, epoch]), chunk=256, patch=256)
        return [PlannedPatch(int(c.scene[x.candidate]), int(c.y0[x.candidate]),
                             int(c.x0[x.candidate]), x.dy, x.dx, x.aug) for x in d]

    rows: dict[str, Any] = {}
    for name in models:
        rows[name] = _measure(name, store, ref, planned, batch, steps, threads, device)
        print(f"{name}: {json.dumps(rows[name])}", flush=True)
    result["models"] = rows
    first = rows.get("unet:resnet34", {})
    result["target"] = "loader >= 1.2 x step (unet:resnet34, batch 64); GPU busy >= 0.85"
    result["met"] = (first.get("loader_over_step", 0) >= 1.2
                     and first.get("gpu_busy", 0) >= 0.85)
    shutil.rmtree(work, ignore_errors=True)
    if out is not None:
        out.write_text(json.dumps(result, indent=2))
    return result


def _measure(name: str, store: Any, ref: Any, planned: Any, batch: int, steps: int,
             threads: int, device: str) -> dict[str, float]:
    """One model: the loader alone, the step alone on a held batch, both streamed."""
    import torch

    from models import Runtime, new_model
    from training import PatchStream, to_device

    adapter = new_model(name, bands=ref.bands, classes=ref.classes,
                        mean=(0.1,) * len(ref.bands), std=(0.05,) * len(ref.bands),
                        runtime=Runtime(device, "bf16" if device == "cuda" else "fp32"))
    stream = PatchStream(store, [ref], adapter.spec, threads=threads, pin=device == "cuda")
    module = adapter.module.train()
    opt = torch.optim.AdamW(module.parameters(), lr=1e-4)
    amp = torch.bfloat16 if device == "cuda" else None

    def step(x: Any, y: Any) -> None:
        if device == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=adapter.device.type, dtype=amp or torch.float32,
                            enabled=amp is not None):
            loss = torch.nn.functional.cross_entropy(adapter.logits(x).float(), y,
                                                     ignore_index=255)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    try:
        # the loader alone: host batches as they cross to the device
        t = time.perf_counter()
        n = sum(len(hb) for hb in stream.batches(planned(batch * 20, 1), 256, batch))
        loader = n / (time.perf_counter() - t)
        # the step alone, on one batch held on the device
        (hb,) = stream.batches(planned(batch, 2), 256, batch)
        xy = to_device(hb, stream, adapter.device)
        for _ in range(5):
            step(*xy)
        sync()
        times = []
        for _ in range(20):
            t = time.perf_counter()
            step(*xy)
            sync()
            times.append(time.perf_counter() - t)
        held = statistics.median(times)
        # streamed, as `train` runs
        t = time.perf_counter()
        for hb in stream.batches(planned(batch * steps, 3), 256, batch):
            step(*to_device(hb, stream, adapter.device))
        sync()
        streamed = time.perf_counter() - t
    finally:
        stream.close()
    if device == "cuda":
        torch.cuda.empty_cache()
    return {"loader_patches_s": round(loader, 1), "step_patches_s": round(batch / held, 1),
            "loader_over_step": round(loader * held / batch, 2),
            "streamed_patches_s": round(batch * steps / streamed, 1),
            "gpu_busy": round(steps * held / streamed, 3)}


def table(result: dict) -> str:
    """The README's GPU training table."""
    if "models" not in result:
        return f"GPU training section skipped: {result.get('skipped')}"
    head = (f"{result['gpu']}, {result['cores']} cores, torch {result['torch']}; "
            f"{result['scene']}; batch {result['batch']}, {result['host_threads']} host "
            "threads\n\n| model | loader patches/s | step patches/s | loader / step | "
            "streamed patches/s | GPU busy |\n| --- | --- | --- | --- | --- | --- |\n")
    return head + "\n".join(
        f"| {k} | {r['loader_patches_s']} | {r['step_patches_s']} | {r['loader_over_step']} "
        f"| {r['streamed_patches_s']} | {100 * r['gpu_busy']:.0f} % |"
        for k, r in result["models"].items())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=("prepare", "run", "all"))
    ap.add_argument("seed", type=Path)
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--models", default="unet:resnet34,unet,segformer")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 8)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--device", default="cuda", help="cpu: the same steps on the CPU, as a "
                    "smoke test of the script (not a measurement)")
    a = ap.parse_args()
    if a.step in ("prepare", "all"):
        prepare(a.seed)
    if a.step in ("run", "all"):
        res = run(a.seed, a.size, a.models.split(","), a.batch, a.steps, a.threads, a.device,
                  a.out)
        print(table(res))


if __name__ == "__main__":
    main()
