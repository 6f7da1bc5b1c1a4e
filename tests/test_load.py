"""Load: 8 predict jobs started at once, each from its own `satchunk predict` process,
on one cluster of 2 workers, all complete with no worker lost, and every mask equals
the mask of a job run alone. (The 10-minute training stream is `benchmarks/soak.py`.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from joboutput import chunks, objects

from chunkstore import item_key, mask_key, open_store
from ingest import check_inputs, ingest_scenes

L8_ITEM = "small_full_data_cloudy"
CSMASK_ID = "ukis-csmask-4b-l1c-1.0.0-4BL1C"
JOBS = 8


def test_eight_concurrent_predicts_on_two_workers(s3_env, landsat_dir):
    from satchunk.cluster import dask_client

    store = open_store(env=s3_env)
    env = {**os.environ, **s3_env}
    with dask_client(workers=2, quiet=True) as client:
        scenes = check_inputs([str(landsat_dir)], "l8", shard=256, chunk=128)
        for i in range(JOBS + 1):
            ingest_scenes(scenes, f"l8-{i}", store, client, shard=256, chunk=128,
                          progress=False)
        workers = dict(client.run(os.getpid))

        def predict(i):
            return subprocess.Popen(
                [sys.executable, "-m", "satchunk", "predict", L8_ITEM, "--collection",
                 f"l8-{i}", "--model", "ukis-csmask:4b", "--scheduler",
                 client.scheduler.address, "--json"],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        alone = predict(JOBS)
        out, err = alone.communicate(timeout=600)
        assert alone.returncode == 0, err[-2000:]
        procs = [predict(i) for i in range(JOBS)]
        results = [p.communicate(timeout=900) for p in procs]
        for p, (out, err) in zip(procs, results, strict=True):
            assert p.returncode == 0, err[-2000:]
            (r,) = json.loads(out)
            assert r["status"] == "predicted" and r["written_shards"] == 9
        assert dict(client.run(os.getpid)) == workers  # the same 2 workers: none restarted
    reference = chunks(objects(store, mask_key(f"l8-{JOBS}", L8_ITEM, CSMASK_ID)))
    assert len([k for k in reference if k.startswith("class/")]) == 9
    for i in range(JOBS):
        assert store.exists(item_key(f"l8-{i}", f"{L8_ITEM}__{CSMASK_ID}"))
        assert chunks(objects(store, mask_key(f"l8-{i}", L8_ITEM, CSMASK_ID))) == reference
