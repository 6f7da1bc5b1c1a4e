"""The prediction pipeline's own cost on the CPU, with a null model: a 1x1 convolution
(blue, green, red, nir -> 2 classes, tile 256, halo 32, logits out) exported to ONNX at
run time, so that nearly all the time is the pipeline's (reads, inputs, tiling,
blending, products, writes, Dask, the catalog), not the model's.

P7: null-model predict MPix/s per worker core, end to end on the embedded S3 (2 workers
x 1 thread) on a 4096^2 mosaic of the real Sentinel-2 crop in 2048 px shards: median of
--repeats runs after a warm-up (target >= 5). With it, where the time goes: the same
predict once more in this process, its tasks run one after the other, under cProfile,
its cumulative time put to stages by function (read, inputs, model, blend, pieces,
products, write, client), and ``dask``: the Dask runs' median wall minus half the
in-process task time (what two cores would take with no scheduling at all).

P9: null-model MPix/s over N chips of 256^2 (default 1,000: 65.5 MPix) in one
predict_job over their collection, over the MPix/s of one 8192^2 scene (67.1 MPix)
(target >= 0.5). A few distinct real chips are cut from the mosaic and ingested; the
rest are copies of them made object by object in the store (scene Zarr and STAC item,
under new ids), and the collection is refreshed once. A probe of 32 chips runs first;
when it takes more than --chip-cap seconds the full run is skipped and its rate is the
probe's, reported as an extrapolation; else the full run is repeated --repeats times
while that fits 900 s (by the first run's time).

    python -m benchmarks.pipeline [--repeats 3] [--chips 1000] [--quick]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._results import ACQUIRED, COLLECTION, Bench, bench_env, header, save
from chunkstore import Store, item_key, list_items, mask_key, scene_key
from chunkstore._stac import refresh_collection
from models import load_model
from satchunk import IngestOptions, PredictOptions, ingest_job, predict_job

SHARD, CHUNK = 2048, 256
CHIPS = "chips"  # the P9 chips' collection
CHIP = 256
DISTINCT = 8  # real chips ingested; the others are copies of them
PROBE = 32  # chips predicted first, to decide whether the full run fits the cap
BANDS = ("blue", "green", "red", "nir")
FULL = {"p7": (4096, SHARD), "p9_scene": 8192, "chips": 1000}
QUICK = {"p7": (2048, 1024), "p9_scene": 2048, "chips": 64}

# where the in-process predict's time goes: stage -> functions (file, names it has had);
# the cumulative time of each, less what one of them spends in another of its stage
STAGES: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "read": [("inference/_runner.py", ("read_window", "_read_window"))],
    "inputs": [("models/_inputs.py", ("model_inputs",)), ("models/_inputs.py", ("valid_pixels",)),
               ("inference/_block.py", ("_take",))],
    "model": [("models/_onnx.py", ("probabilities",))],
    "blend": [("inference/_block.py", ("_add_tiles",))],  # less "model"
    "pieces": [("inference/_parts.py", ("write_part",)), ("inference/_parts.py", ("read_part",))],
    "products": [("inference/_block.py", ("products",))],
    "write": [("chunkstore/_mask.py", ("write_mask_shard",))],
}


def null_model(folder: Path) -> str:
    """The null model's ONNX file and sidecar in ``folder``; its ``--model`` reference."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "null.onnx"
    torch.manual_seed(0)
    net = torch.nn.Conv2d(len(BANDS), 2, 1).eval()
    with warnings.catch_warnings():  # "legacy TorchScript-based ONNX export": as asked
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, (torch.randn(2, len(BANDS), CHIP, CHIP),), str(path),
                          input_names=["tiles"], output_names=["logits"],
                          dynamic_axes={"tiles": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=17, dynamo=False)
    path.with_suffix(".json").write_text(json.dumps({
        "name": "null", "version": "1", "bands": list(BANDS), "classes": ["a", "b"],
        "tile": CHIP, "halo": 32, "output": "logits"}, indent=2))
    return f"onnx:{path}"


def _fresh(store: Store, collection: str = COLLECTION) -> Store:
    """The store with ``collection``'s masks and mask items removed, so predict runs
    again."""
    s = store.with_credentials(store.credentials)
    s.delete(f"masks/{collection}")
    for key in [k for k in s.list(f"stac/{collection}") if "__" in k]:
        s.delete(key)
    return s


def _timed_predict(bench: Bench, store: Store, opts: PredictOptions,
                   collection: str = COLLECTION) -> float:
    s = _fresh(store, collection)
    t0 = time.perf_counter()
    predict_job(opts, bench.place(s, "predict"))
    return time.perf_counter() - t0


def _runs(bench: Bench, store: Store, opts: PredictOptions, repeats: int, label: str
          ) -> list[float]:
    """Seconds of ``repeats`` predicts after a warm-up, each printed as it ends."""
    print(f"{label} warm-up: {_timed_predict(bench, store, opts):.2f} s", flush=True)
    walls = []
    for i in range(repeats):
        walls.append(_timed_predict(bench, store, opts))
        print(f"{label} run {i}: {walls[-1]:.2f} s", flush=True)
    return walls


# -- P7 ------------------------------------------------------------------------------------

def _in_process(bench: Bench, store: Store, opts: PredictOptions, profile: bool
                ) -> tuple[float, float, cProfile.Profile | None]:
    """The predict in this process, its tasks one after the other (the border-tile
    tasks first): (wall s, task s, the profile when asked)."""
    import torch

    import chunkstore
    import inference

    spent = [0.0]

    def sequential(client: Any, fn: Callable[..., Any], tasks: Any, credentials: Any,
                   *args: Any, first: Any = None, **kwargs: Any) -> list[Any]:
        t0 = time.perf_counter()
        try:
            if first is not None:
                for t in first.tasks:
                    first.fn(t, credentials=credentials)
            return [fn(t, credentials=credentials) for t in tasks]
        finally:
            spent[0] += time.perf_counter() - t0

    # every inference module that calls chunkstore's task runner by its name
    callers = [m for name, m in sorted(sys.modules.items())
               if name.startswith(f"{inference.__name__}.")
               and getattr(m, "run_shard_tasks", None) is chunkstore.run_shard_tasks]
    threads = torch.get_num_threads()
    prof = cProfile.Profile() if profile else None
    for m in callers:
        m.run_shard_tasks = sequential  # type: ignore[attr-defined]
    try:
        s = _fresh(store)
        t0 = time.perf_counter()
        if prof:
            prof.enable()
        try:
            predict_job(opts, bench.place(s, "predict-in-process"))
        finally:
            if prof:
                prof.disable()
        wall = time.perf_counter() - t0
    finally:
        for m in callers:
            m.run_shard_tasks = chunkstore.run_shard_tasks  # type: ignore[attr-defined]
        torch.set_num_threads(threads)  # the tasks set this process's to the workers'
    if not spent[0]:
        raise RuntimeError("the predict ran no task in this process: no inference module "
                           "calls chunkstore.run_shard_tasks by that name any more")
    return wall, spent[0], prof


def stage_seconds(prof: cProfile.Profile) -> tuple[dict[str, float], list[str]]:
    """Cumulative seconds of each stage of :data:`STAGES` in ``prof`` (``blend`` less
    ``model``), and the functions not found (counted 0)."""
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    missing = []

    def found(path: str, names: tuple[str, ...]) -> list[tuple]:
        return [k for k in stats if k[2] in names
                and k[0].replace("\\", "/").endswith("/" + path)]

    out = {}
    for stage, funcs in STAGES.items():
        keys = []
        for path, names in funcs:
            hit = found(path, names)
            if not hit:
                missing.append(f"{path}:{'|'.join(names)}")
            keys += hit
        total = sum(stats[k][3] for k in keys)
        # time a function of the stage spends called from another one of it is counted
        # in both (a recursive call is not: cProfile counts the outermost call only)
        total -= sum(ct for k in keys for c, (_, _, _, ct) in stats[k][4].items()
                     if c in keys and c != k)
        out[stage] = total
    out["blend"] -= out["model"]
    return out, missing


def split(bench: Bench, store: Store, opts: PredictOptions, dask_wall: float) -> dict:
    """Where the time goes: after an in-process warm-up (the model loads in this
    process), one unprofiled in-process run (its task time sizes ``dask``) and one
    under cProfile (the stages)."""
    _in_process(bench, store, opts, profile=False)
    wall, tasks, _ = _in_process(bench, store, opts, profile=False)
    pwall, ptasks, prof = _in_process(bench, store, opts, profile=True)
    assert prof is not None
    sec, missing = stage_seconds(prof)
    sec["other (in tasks)"] = ptasks - sum(sec.values())
    sec["client"] = pwall - ptasks
    dask = dask_wall - tasks / 2
    stages = {k: {"s": round(v, 3), "share": round(v / pwall, 4)} for k, v in sec.items()}
    return {"in_process_s": round(wall, 3), "in_process_tasks_s": round(tasks, 3),
            "in_process_client_s": round(wall - tasks, 3),
            "profiled_s": round(pwall, 3), "profiled_tasks_s": round(ptasks, 3),
            "stages": stages, "missing": missing,
            "dask": {"s": round(dask, 3), "share_of_dask_wall": round(dask / dask_wall, 4),
                     "beyond_client_s": round(dask - (wall - tasks), 3)},
            "how": "stages: cumulative time under cProfile of one in-process predict, its "
                   "tasks run one after the other (shares of that run's wall); client: "
                   "predict_job outside the tasks; dask: median Dask wall - in-process task "
                   "time / 2 (unprofiled), beyond_client_s: that less the client's time"}


def p7(bench: Bench, model: str, size: int, shard: int, repeats: int) -> dict:
    store, item = bench.ingested(size, "p7", shard, CHUNK)
    opts = PredictOptions([item], model, COLLECTION)
    walls = _runs(bench, store, opts, repeats, "P7")
    med = statistics.median(walls)
    cores = sum(bench.client.nthreads().values())
    value = size * size / 1e6 / med / cores
    where = split(bench, store, opts, med)
    print("P7 split: " + ", ".join(f"{k} {v['s']:.2f} s ({v['share']:.0%})"
                                   for k, v in where["stages"].items())
          + f"; dask {where['dask']['s']:.2f} s", flush=True)
    return {"size": size, "shard": shard, "worker_cores": cores,
            "runs_s": [round(w, 3) for w in walls], "median_s": round(med, 3),
            "mpix_s": round(size * size / 1e6 / med, 2), "value": round(value, 2),
            "target": ">= 5", "met": value >= 5, "split": where}


# -- P9 ------------------------------------------------------------------------------------

def chip_files(bench: Bench, size: int, n: int) -> list[str]:
    """``n`` distinct real 256^2 chips cut from the ``size``^2 mosaic's band VRTs, as
    4-band GeoTIFFs (blue, green, red, nir)."""
    folder = bench.mosaic(size)
    vrts = [next(folder.glob(f"*_{b}.vrt")) for b in ("B02", "B03", "B04", "B08")]
    out = bench.tmp / "chips"
    out.mkdir(exist_ok=True)
    # a grid of chips 256 px apart, inside the crop (1933 px wide)
    return cut_chips(vrts, [(128 + (k // 4) * CHIP, 128 + (k % 4) * CHIP, CHIP, CHIP)
                            for k in range(n)], out)


def cut_chips(band_files: list[Path], windows: list[tuple[int, int, int, int]], out: Path
              ) -> list[str]:
    """GeoTIFFs ``out/chip_<k>.tif`` of the windows (row, col, height, width) of the
    single-band rasters ``band_files`` (one band each, on one grid), each with its
    window's georeferencing and 0 as nodata."""
    import rasterio
    from rasterio.windows import Window
    from rasterio.windows import transform as window_transform

    srcs = [rasterio.open(f) for f in band_files]
    paths = []
    try:
        for k, (r, c, h, w) in enumerate(windows):
            win = Window(c, r, w, h)
            data = np.stack([s.read(1, window=win) for s in srcs])
            p = out / f"chip_{k:04d}.tif"
            with rasterio.open(p, "w", driver="GTiff", width=w, height=h, count=len(srcs),
                               dtype=data.dtype, crs=srcs[0].crs, nodata=0,
                               transform=window_transform(win, srcs[0].transform)) as dst:
                dst.write(data)
            paths.append(str(p))
    finally:
        for s in srcs:
            s.close()
    return paths


def _renamed(item: dict, old: str, new: str, href: str) -> dict:
    """A copy of scene item ``item`` (id ``old``) as item ``new`` whose Zarr is at
    ``href``."""
    d = json.loads(json.dumps(item))
    d["id"] = new
    d["assets"]["zarr"]["href"] = href
    for link in d.get("links", []):
        h = link.get("href", "")
        link["href"] = h.replace(f"/{old}/", f"/{new}/").replace(f"/{old}.", f"/{new}.")
    return d


def replicate(store: Store, collection: str, sources: list[str], n: int, width: int = 4
              ) -> list[str]:
    """Items ``chip_<k>`` for k in len(sources)..n-1, each a copy of ``sources[k % len]``
    in the store: every object of its scene Zarr (the group's ``item`` attribute set to
    the new id), then its STAC item (id, Zarr href, links), with a thread pool of
    writes; the collection is refreshed once at the end. The new ids."""
    objects = {}
    for src in sources:
        prefix = scene_key(collection, src)
        objects[src] = {k[len(prefix) + 1:]: store.read_bytes(k) for k in store.list(prefix)}
    items = {src: json.loads(store.read_bytes(item_key(collection, src))) for src in sources}

    def one(k: int) -> str:
        src, new = sources[k % len(sources)], f"chip_{k:0{width}d}"
        zkey = scene_key(collection, new)
        for rel, data in objects[src].items():
            if rel == "zarr.json":
                meta = json.loads(data)
                meta.get("attributes", {}).get("satchunk", {})["item"] = new
                data = json.dumps(meta, indent=2).encode()
            store.write_bytes(f"{zkey}/{rel}", data)
        store.write_bytes(item_key(collection, new), json.dumps(
            _renamed(items[src], src, new, store.url(zkey)), indent=2).encode())  # the commit
        return new

    with ThreadPoolExecutor(16) as pool:
        made = list(pool.map(one, range(len(sources), n)))
    refresh_collection(store, collection)
    return made


def _classes(store: Store, collection: str, item: str, model_id: str) -> np.ndarray:
    import zarr

    key = mask_key(collection, item, model_id) + "/class"
    return np.asarray(zarr.open_array(store.zarr_store(key, read_only=True), zarr_format=3,
                                      mode="r")[:])


def p9(bench: Bench, model: str, chips: int, scene_size: int, repeats: int,
       cap_s: float = 60.0, budget_s: float = 900.0) -> dict:
    """Chips against one scene of about as many pixels."""
    # one scene
    sstore, sitem = bench.ingested(scene_size, "p9-scene", SHARD, CHUNK)
    sopts = PredictOptions([sitem], model, COLLECTION)
    swalls = _runs(bench, sstore, sopts, repeats, f"P9 scene {scene_size}^2")
    smed = statistics.median(swalls)
    scene_mpix = scene_size * scene_size / 1e6
    scene = {"size": scene_size, "mpix": round(scene_mpix, 2),
             "runs_s": [round(w, 3) for w in swalls], "median_s": round(smed, 3),
             "mpix_s": round(scene_mpix / smed, 3)}

    # the chips: a few real ones ingested, the others copies of them
    store = bench.store("p9-chips")
    distinct = min(DISTINCT, chips)
    t0 = time.perf_counter()
    ingest_job(IngestOptions(chip_files(bench, scene_size, distinct), CHIPS,
                             sensor="sentinel-2", bands=list(BANDS), acquired=ACQUIRED,
                             shard=SHARD, chunk=CHUNK), bench.place(store, "ingest"))
    ingest_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    sources = [f"chip_{k:04d}" for k in range(distinct)]
    made = replicate(store, CHIPS, sources, chips)
    copy_s = time.perf_counter() - t0
    listed = [i["id"] for i in list_items(store, CHIPS)
              if i["properties"].get("satchunk:kind") != "mask"]
    if listed != sorted(sources + made):
        raise RuntimeError(f"the replicated catalog lists {len(listed)} scene items, not "
                           f"{chips}")
    print(f"P9 chips: {distinct} ingested in {ingest_s:.1f} s, {len(made)} copies in "
          f"{copy_s:.1f} s, {len(listed)} items listed", flush=True)

    # warm-up on one chip, then the probe: the first PROBE chips (real ones and copies)
    _timed_predict(bench, store, PredictOptions([listed[0]], model, CHIPS), CHIPS)
    probe = min(PROBE, chips)
    probe_s = _timed_predict(bench, store, PredictOptions(listed[:probe], model, CHIPS),
                             CHIPS)
    print(f"P9 probe: {probe} chips in {probe_s:.2f} s ({probe_s / probe:.3f} s a chip)",
          flush=True)
    same = None
    if probe > distinct:  # a copy's mask equals its source's
        model_id = load_model(model).spec.model_id
        same = bool(np.array_equal(_classes(store, CHIPS, listed[0], model_id),
                                   _classes(store, CHIPS, listed[distinct], model_id)))
        if not same:
            raise RuntimeError(f"the mask of copy {listed[distinct]} differs from its "
                               f"source {listed[0]}'s")
    chip_mpix = chips * CHIP * CHIP / 1e6
    side: dict[str, Any] = {"chips": chips, "chip": CHIP, "distinct": distinct,
                            "mpix": round(chip_mpix, 2), "ingest_s": round(ingest_s, 1),
                            "copy_s": round(copy_s, 1), "probe_chips": probe,
                            "probe_s": round(probe_s, 3), "copy_mask_equals_source": same}
    projected = probe_s * chips / probe
    if probe_s > cap_s:
        rate = probe * CHIP * CHIP / 1e6 / probe_s
        side.update(extrapolated=True, measured_chips=probe,
                    median_s=round(projected, 1), s_per_chip=round(probe_s / probe, 4),
                    mpix_s=round(rate, 3),
                    note=f"{probe} chips took {probe_s:.1f} s > {cap_s:.0f} s: the run of "
                         f"{chips} was skipped; its seconds and MPix/s are extrapolated "
                         f"from the {probe}-chip probe (pessimistic where the probe's "
                         "chips fill fewer tasks than the cluster has threads)")
        print(f"P9: {side['note']} ({projected:.0f} s projected)", flush=True)
    else:
        opts = PredictOptions([], model, CHIPS)  # every item of the collection
        walls: list[float] = []
        while len(walls) < repeats:  # as many as fit the budget, by the first run's time
            walls.append(_timed_predict(bench, store, opts, CHIPS))
            print(f"P9 {chips} chips run {len(walls) - 1}: {walls[-1]:.2f} s", flush=True)
            if walls[0] * repeats > budget_s:
                break
        med = statistics.median(walls)
        side.update(extrapolated=False, measured_chips=chips,
                    runs_s=[round(w, 3) for w in walls],
                    median_s=round(med, 3), s_per_chip=round(med / chips, 4),
                    mpix_s=round(chip_mpix / med, 3))
    value = side["mpix_s"] / scene["mpix_s"]
    print(f"P9: chips {side['mpix_s']} MPix/s, scene {scene['mpix_s']} MPix/s -> "
          f"{value:.3f}", flush=True)
    return {"scene": scene, "chips": side, "value": round(value, 3), "target": ">= 0.5",
            "met": value >= 0.5, "extrapolated": side["extrapolated"]}


def measure(bench: Bench, repeats: int, scale: dict, chips: int | None = None,
            cap_s: float = 60.0) -> dict:
    """P7 and P9 on ``bench``, at the sizes of ``scale`` (:data:`FULL`, :data:`QUICK`)."""
    model = null_model(bench.tmp / "null-model")
    return {"P7": p7(bench, model, *scale["p7"], repeats),
            "P9": p9(bench, model, chips or scale["chips"], scale["p9_scene"], repeats,
                     cap_s)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chips", type=int, default=None, help="P9 chips (default 1000; 64 "
                    "with --quick)")
    ap.add_argument("--chip-cap", type=float, default=60.0,
                    help="seconds the 32-chip probe may take before the full chip run is "
                         "skipped and extrapolated")
    ap.add_argument("--quick", action="store_true",
                    help="small scenes and 64 chips, 1 repeat: to check the harness")
    ap.add_argument("--out", default="benchmarks/results/pipeline.json")
    a = ap.parse_args()
    repeats = 1 if a.quick else a.repeats
    load = os.getloadavg()[0]
    with bench_env() as bench:
        results = header() | measure(bench, repeats, QUICK if a.quick else FULL, a.chips,
                                     a.chip_cap)
    # a shared machine: how busy it was (1-minute load average, 2 cores here)
    results["load_average"] = {"start": round(load, 2), "end": round(os.getloadavg()[0], 2)}
    save(results, Path(a.out))


if __name__ == "__main__":
    main()
