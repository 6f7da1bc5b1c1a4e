"""``make bench``: every measurement in one run, on one embedded S3 server and one
local cluster (2 workers x 1 thread), on the real Sentinel-2 crop and mosaics of it.
Writes ``benchmarks/results/latest.json`` (P1..P7 and P9 with value, target and met, plus
scheduling, cost and the GPU note), prints the Markdown table and puts it in the
README between the bench markers.

    python -m benchmarks [--repeats 3] [--no-readme] [--quick]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks import inference, ingest, peers, pipeline, training
from benchmarks._report import table, update_readme
from benchmarks._results import bench_env, gpu_name, header, save

# P6: a scene of 4 shards on the 2 workers (3072^2 in 1536 px shards: as 4096^2 in the
# default 2048 px, at half the run time) and one of 1 shard, for memory growth
FULL = {"sizes": (2048, 8192, 16384), "p3": 8192, "p1": (2048, 1024), "p6": (3072, 1536),
        "pipeline": pipeline.FULL}
QUICK = {"sizes": (1024, 2048), "p3": 2048, "p1": (1024, 512), "p6": (1024, 512),
         "pipeline": pipeline.QUICK}


def run(repeats: int, scale: dict) -> dict:
    t0 = time.perf_counter()
    r = header()
    took: dict[str, float] = {}

    def lap(name: str) -> None:  # wall seconds of each section, for the results file
        took[name] = round(time.perf_counter() - t0 - sum(took.values()))

    with bench_env() as bench:
        lap("set-up")
        print("== ingest: P2 (ingest), P3")
        sizes = scale["sizes"]
        ing = ingest.measure(bench, list(sizes), scale["p3"], repeats)
        lap("ingest (P2 ingest, P3)")
        print("== inference: P1, scheduling")
        r["P1"] = inference.measure_p1(bench, ["unet", "segformer", "ukis-csmask:4b"],
                                       *scale["p1"], repeats)
        lap("inference (P1, scheduling)")
        print("== inference: P2")
        scenes = {s: (bench.store(f"p2-{s}"), _item(bench, s)) for s in sizes}
        r["P2"] = inference.p2(bench, scenes) | {"ingest": ing["P2_ingest"]}
        lap("inference (P2)")
        r["P3"] = ing["P3"]
        print("== loader: P4, P5")
        tr = training.measure(bench, 256, 8, 40, repeats)
        r["P4"] = tr["P4"] | {k: tr[k] for k in ("patches_per_s", "cores",
                                                 "distinct_chunks_per_patch",
                                                 "split_ms_per_patch")}
        r["P5"] = tr["P5"]
        lap("loader (P4, P5)")
        print("== peers: P6")
        r["P6"] = peers.measure(bench, *scale["p6"], repeats)
        lap("peers (P6)")
        print("== pipeline: P7, P9 (null model)")
        pl = pipeline.measure(bench, repeats, scale["pipeline"])
        r["P7"], r["P9"] = pl["P7"], pl["P9"]
        lap("pipeline (P7, P9)")
    csmask = r["P1"]["models"]["ukis-csmask:4b"]
    r["scheduling"] = {m: v["scheduling"] | {"useful_pixels": v["useful_pixels"]}
                       for m, v in r["P1"]["models"].items()}
    r["cost"] = {
        "ingest": {k: ing[k] for k in ("cpu_s_per_km2", "joules_per_km2")},
        "inference (ukis-csmask)": {k: csmask[k] for k in ("cpu_s_per_km2", "joules_per_km2")},
        "training (UNet step)": {"cpu_s_per_km2": tr["cpu_s_per_km2"], "joules_per_km2": None},
    }
    name = gpu_name()
    r["gpu"] = ({"available": True, "name": name} if name else
                {"available": False, "why": "no GPU on this machine: no GPU table"})
    r["seconds"] = round(time.perf_counter() - t0)
    r["section_seconds"] = took
    return r


def _item(bench, size: int) -> str:
    return bench.mosaic_scene(size, ingest.SHARD, ingest.CHUNK).item_id


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/latest.json")
    ap.add_argument("--no-readme", action="store_true", help="leave README.md as it is")
    ap.add_argument("--quick", action="store_true",
                    help="small scenes, to check the harness (not for the README)")
    a = ap.parse_args()
    results = run(a.repeats, QUICK if a.quick else FULL)
    save(results, Path(a.out))
    text = table(results)
    print("\n" + text)
    if not (a.no_readme or a.quick) and update_readme(Path("README.md"), text):
        print("\nREADME.md: benchmark table updated")


if __name__ == "__main__":
    main()
