"""The GPU section, P8: end-to-end predict MPix/s over the pure model's MPix/s on the same
tiles, per model and precision, with the absolute MPix/s and km^2/s (10 m pixels).
Runs on any CUDA machine; without one it says so and skips.

The scene is a mosaic of the real Sentinel-2 crop (10 m bands blue, green, red, nir) in
a local-directory store. ``prepare`` (any machine with satchunk installed: it ingests
the crop) writes a seed folder: the scene skeletons and STAC items of the mosaics and a
1024^2 crop of the real DN. ``run`` (the GPU machine, which needs only torch, numpy,
xarray and the Zarr/Dask/pystac packages; no rasterio or pyproj) fills the mosaics'
shards with the crop, mirrored, and measures. Both: ``all``.

    python -m benchmarks.gpu prepare DIR [--size 16384]
    python -m benchmarks.gpu run DIR [--models unet:bf16,unet:fp32,...] [--repeats 3]
    python -m benchmarks.gpu all DIR

``end_to_end_s`` is a whole ``predict_job`` on a running GPU cluster (one worker per
GPU, ``satchunk.cluster``): store reads and decoding, inputs, tiles, model, blending,
products, encoding and writes, Dask, the catalog commit and the job record.
``model_s`` is the model alone (``Adapter.probabilities`` in batches of the same
size, inputs already on the device) over as many tiles as the scene has.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from chunkstore import (
    SceneSchema,
    ShardGrid,
    create_scene,
    open_store,
    read_scene,
    scene_item,
    scene_key,
    write_item,
    write_shard,
)
from inference import TilePlan
from models import Radiometry, Runtime, call_batch, load_model, model_inputs

COLLECTION = "gpu"
CROP = 1024
BANDS = ("blue", "green", "red", "nir")
MODELS = ("unet:bf16", "unet:fp32", "unet:resnet34:bf16", "segformer:bf16", "segformer:fp32",
          "unet:bf16:compile")


def prepare(seed: Path, size: int) -> None:
    """The seed: skeletons and items of a ``size``^2 and a 2048^2 (warm-up) mosaic, and
    the real DN crop they are filled from."""
    from benchmarks._results import ACQUIRED, bench_env

    seed.mkdir(parents=True, exist_ok=True)
    store = open_store(str(seed / "store"))
    with bench_env() as bench:
        src = bench.store("crop")
        item = bench.ingest(src, bench.mosaic(2048), 2048, 256)
        info = read_scene(src, scene_key("bench", item))
        import zarr

        arr = zarr.open_array(src.zarr_store(f"{info.key}/reflectance", read_only=True),
                              zarr_format=3, mode="r")
        keep = [list(info.bands).index(b) for b in BANDS]
        o = (2048 - CROP) // 2
        np.save(seed / "crop.npy", np.asarray(arr[keep, o:o + CROP, o:o + CROP]))
    for name, n in (("warm", 2048), (f"mosaic-{size}", size)):
        schema = SceneSchema(BANDS, info.dtype, info.scale, info.offset, info.fill or 0,
                             info.crs_wkt, info.transform, ShardGrid(n, n, 2048, 256))
        create_scene(store, scene_key(COLLECTION, name), schema)
        band_meta = [{"name": b, "common_name": b, "center_wavelength": None} for b in BANDS]
        write_item(store, scene_item(schema, name, COLLECTION, store.url(scene_key(
            COLLECTION, name)), datetime.fromisoformat(ACQUIRED), band_meta))
    (seed / "seed.json").write_text(json.dumps({"size": size, "scale": info.scale,
                                                "offset": info.offset, "fill": info.fill}))
    mb = sum(f.stat().st_size for f in seed.rglob("*") if f.is_file()) / 1e6
    print(f"seed in {seed}: {mb:.1f} MB")


def _fill(store: Any, item: str, crop: np.ndarray) -> None:
    """Every shard of ``item``: the crop tiled with mirroring (no seams), real DN."""
    from inference._tiling import reflect

    info = read_scene(store, scene_key(COLLECTION, item))
    g = info.grid
    schema = SceneSchema(tuple(info.bands), info.dtype, info.scale, info.offset,
                         info.fill if info.fill is not None else 0, info.crs_wkt,
                         info.transform, g)

    def one(s: tuple[int, int]) -> None:
        r0, c0, h, w = g.window(*s)
        iy = reflect(np.arange(r0, r0 + h), CROP)
        ix = reflect(np.arange(c0, c0 + w), CROP)
        block = crop[:, iy][:, :, ix]
        write_shard(store, info.key, schema, s[0], s[1], block, stats=(h * w, 0))

    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        list(pool.map(one, g.shards()))


def _fresh(store: Any) -> None:
    """Every mask and mask item gone, so predict runs again."""
    store.delete("masks")
    for key in [k for k in store.list(f"stac/{COLLECTION}") if "__" in k]:
        store.delete(key)


def _pure(ref: str, runtime: Runtime, crop: np.ndarray, rad: Radiometry, tiles: int,
          repeats: int) -> float:
    """Seconds the model alone takes for ``tiles`` tiles (real inputs on the device, in
    batches of the block function's size), median of ``repeats``."""
    import torch

    adapter = load_model(ref, runtime=runtime)
    spec = adapter.spec
    x, _ = model_inputs(torch.from_numpy(crop).to(adapter.device), BANDS, spec, rad)
    T, S = spec.tile, spec.stride
    cut = x.unfold(1, T, S).unfold(2, T, S).permute(1, 2, 0, 3, 4).reshape(-1, x.shape[0], T, T)
    batch = call_batch(adapter)
    reps = -(-batch // cut.shape[0])
    pool = cut.repeat(reps, 1, 1, 1)[:batch].contiguous()
    calls = -(-tiles // batch)
    sync = torch.cuda.synchronize if runtime.on_gpu else (lambda: None)
    for _ in range(3):  # warm-up: cuDNN's choice, compilation
        adapter.probabilities(pool)
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        for _ in range(calls):
            adapter.probabilities(pool)
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * tiles / (calls * batch)


def _classes(store: Any, item: str, model_id: str) -> np.ndarray:
    """The class array of ``item``'s mask by ``model_id``."""
    import zarr

    key = f"masks/{COLLECTION}/{item}/{model_id}.zarr/class"
    return np.asarray(zarr.open_array(store.zarr_store(key, read_only=True), zarr_format=3,
                                      mode="r")[:])


def _pairs(masks: dict[str, np.ndarray]) -> list[tuple[str, str]]:
    """(config, the same model's fp32 config) for every reduced-precision config."""
    out = []
    for name in masks:
        parts = [p for p in name.split(":") if p != "compile"]
        ref32 = ":".join(parts[:-1] + ["fp32"])
        if parts[-1] != "fp32" and ref32 in masks:
            out.append((name, ref32))
    return out


def _agreement(crop: np.ndarray, rad: Radiometry) -> dict[str, dict[str, float]]:
    """On the real crop, whole-image: classes of the GPU in bf16 and fp32 against the GPU
    in fp32 and the CPU, and the largest probability difference GPU fp32 - CPU in
    uint8 steps."""
    from inference import predict_scene

    out = {}
    for ref in ("unet", "segformer"):
        runs = {}
        for label, rt in (("cpu", Runtime("cpu")), ("cuda_fp32", Runtime("cuda", "fp32")),
                          ("cuda_bf16", Runtime("cuda", "bf16"))):
            p, valid = predict_scene(crop, BANDS, load_model(ref, runtime=rt), rad)
            runs[label] = (p.argmax(0).cpu().numpy(), np.rint(p.cpu().numpy() * 255))
        cpu, f32, b16 = runs["cpu"], runs["cuda_fp32"], runs["cuda_bf16"]
        out[ref] = {"bf16_vs_fp32": round(float(np.mean(b16[0] == f32[0])), 6),
                    "cuda_fp32_vs_cpu": round(float(np.mean(f32[0] == cpu[0])), 6),
                    "prob_lsb_cuda_fp32_vs_cpu": int(np.abs(f32[1] - cpu[1]).max())}
    return out


def run(seed: Path, models: list[str], repeats: int, out: Path | None,
        device: str = "cuda") -> dict:
    """P8 on the GPU (``device='cpu'`` runs the same steps on the CPU: a smoke test)."""
    import torch

    from satchunk import Place, PredictOptions, dask_client, predict_job, visible_gpus

    result: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds")}
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU here: the GPU section (P8) is skipped")
        return {**result, "skipped": "no CUDA GPU"}
    meta = json.loads((seed / "seed.json").read_text())
    size = meta["size"]
    rad = Radiometry(meta["scale"], meta["offset"], meta["fill"])
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "satchunk-gpu-bench"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(seed / "store", work)
    store = open_store(str(work))
    crop = np.load(seed / "crop.npy")
    big = f"mosaic-{size}"
    t0 = time.perf_counter()
    for item in ("warm", big):
        _fill(store, item, crop)
    result["fill_s"] = round(time.perf_counter() - t0, 1)
    result.update(gpu=torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
                  cores=os.cpu_count(),
                  torch=torch.__version__, scene=f"{size}^2 x 4 bands uint16, 2048 px shards",
                  store="local directory")
    print(f"{result['gpu']}: filled {size}^2 in {result['fill_s']} s", flush=True)
    rows: dict[str, Any] = {}
    masks: dict[str, np.ndarray] = {}
    mpix = size * size / 1e6
    with dask_client(gpus=visible_gpus() if device == "cuda" else None, quiet=True) as client:
        result["worker_threads"] = sum(client.nthreads().values())
        place = Place(store, client=client, progress=False, command=("bench", "gpu"))
        for name in models:
            parts = name.split(":")
            compile_ = parts[-1] == "compile"
            parts = parts[:-1] if compile_ else parts
            ref, precision = ":".join(parts[:-1]), parts[-1]
            opts = PredictOptions([big], ref, COLLECTION, device=device, precision=precision,
                                  compile=compile_)
            try:
                _fresh(store)  # warm: the workers load the model, cuDNN picks kernels
                predict_job(PredictOptions(["warm"], ref, COLLECTION, device=device,
                                           precision=precision, compile=compile_), place)
                e2e = []
                for _ in range(repeats):
                    _fresh(store)
                    t = time.perf_counter()
                    predict_job(opts, place)
                    e2e.append(time.perf_counter() - t)
                spec = load_model(ref).spec
                tiles = TilePlan.of(spec, (size, size), 2048).tile_count()
                pure = _pure(ref, Runtime(device, precision, compile_), crop, rad, tiles,
                             repeats)
                masks[name] = _classes(store, big, spec.model_id)
            except Exception as exc:  # one model failing leaves the others' rows
                rows[name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"}
                print(f"P8 {name}: {rows[name]['error']}", flush=True)
                continue
            me = statistics.median(e2e)
            rows[name] = {"end_to_end_s": round(me, 3), "model_s": round(pure, 3),
                          "runs_s": [round(v, 3) for v in e2e],
                          "end_to_end_mpix_s": round(mpix / me, 1),
                          "model_mpix_s": round(mpix / pure, 1),
                          "km2_s": round(mpix / me * 100, 1),  # 1 px = 100 m^2 at 10 m
                          "value": round(pure / me, 3)}
            print(f"P8 {name}: {json.dumps(rows[name])}", flush=True)
            if out is not None:  # so far, in case the run is cut short
                out.write_text(json.dumps({**result, "P8": {"models": rows}}, indent=2))
    result["P8"] = {"models": rows, "target": ">= 0.8 (unet bf16)",
                    "met": rows.get("unet:bf16", {}).get("value", 0) >= 0.8}
    result["agreement"] = {
        "mosaic_classes": {a: round(float(np.mean(masks[a] == masks[b])), 6)
                           for a, b in _pairs(masks)},
        "crop": _agreement(crop, rad) if device == "cuda" else {}}
    print("agreement:", json.dumps(result["agreement"]), flush=True)
    if out is not None:
        out.write_text(json.dumps(result, indent=2))
    return result


def table(result: dict) -> str:
    """The README's GPU table."""
    if "P8" not in result:
        return f"GPU section skipped: {result.get('skipped')}"
    head = (f"{result['gpu']}, {result['cores']} cores, torch {result['torch']}; "
            f"{result['scene']}, {result['store']}\n\n"
            "| model:precision | end to end MPix/s | model alone MPix/s | P8 | km²/s |\n"
            "| --- | --- | --- | --- | --- |\n")
    lines = []
    for name, r in result["P8"]["models"].items():
        if "error" in r:
            lines.append(f"| {name} | {r['error']} | | | |")
        else:
            lines.append(f"| {name} | {r['end_to_end_mpix_s']} | {r['model_mpix_s']} | "
                         f"{r['value']} | {r['km2_s']} |")
    return head + "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=("prepare", "run", "all"))
    ap.add_argument("seed", type=Path)
    ap.add_argument("--size", type=int, default=16384)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--device", default="cuda", help="cpu: the same steps on the CPU, as a "
                    "smoke test of the script (not a measurement)")
    args = ap.parse_args()
    if args.step in ("prepare", "all"):
        prepare(args.seed, args.size)
    if args.step in ("run", "all"):
        res = run(args.seed, args.models.split(","), args.repeats, args.out, args.device)
        print(table(res))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
