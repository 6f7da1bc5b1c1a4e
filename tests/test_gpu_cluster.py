"""One worker per GPU (dask-cuda's conventions, plain distributed): each worker sees
its GPU only through CUDA_VISIBLE_DEVICES and advertises a GPU resource, and GPU tasks
go only to such workers on a cluster of mixed CPU and GPU workers. Runs on CPUs: the
workers are real processes; no GPU is touched."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from chunkstore import FirstTasks, run_shard_tasks
from chunkstore._tasks import _slots
from satchunk.cluster import (
    WORKER_ENV,
    _spec_cluster,
    _worker_spec,
    cluster_gpus,
    dask_client,
    gpu_task_resources,
    visible_gpus,
)


def _where(task, credentials):
    from distributed import get_worker

    time.sleep(0.05)
    return get_worker().address


def _record(path, credentials):
    """A first task: writes the address of the worker that runs it to ``path``."""
    Path(path).write_text(_where(path, credentials))


def _env():
    return os.environ.get("CUDA_VISIBLE_DEVICES"), os.environ.get("MALLOC_MMAP_THRESHOLD_")


def test_a_local_gpu_cluster_starts_one_worker_per_gpu_that_sees_only_its_gpu():
    with dask_client(gpus=["0", "1"], threads_per_worker=2, quiet=True) as client:
        workers = client.scheduler_info(n_workers=-1)["workers"]
        seen = client.run(_env)
        assert {workers[a]["name"]: seen[a] for a in workers} == {
            "gpu-0": ("0", WORKER_ENV["MALLOC_MMAP_THRESHOLD_"]),
            "gpu-1": ("1", WORKER_ENV["MALLOC_MMAP_THRESHOLD_"])}
        assert [w["resources"] for w in workers.values()] == [{"GPU": 1}, {"GPU": 1}]
        assert [w["nthreads"] for w in workers.values()] == [2, 2]
        assert cluster_gpus(client) == 2
        # a task asks for a share of its GPU that lets each worker thread run one
        assert gpu_task_resources(client) == {"GPU": 0.5}
        assert _slots(client, gpu_task_resources(client)) == 4
        assert _slots(client, {"GPU": 1}) == 2
        addresses = run_shard_tasks(client, _where, list(range(6)), None,
                                    [f"s-{i}" for i in range(6)], [f"shard {i}" for i in range(6)],
                                    total=6, done=0, desc="t", progress=False,
                                    resources=gpu_task_resources(client))
        assert set(addresses) <= set(workers)


def test_gpu_tasks_go_only_to_gpu_workers_on_a_mixed_cluster(tmp_path):
    from distributed import Client

    spec = {"scratch": str(tmp_path), "memory_limit": 0, "silence": logging.CRITICAL}
    cluster = _spec_cluster({"gpu-0": _worker_spec(2, "0", **spec),
                             "cpu-0": _worker_spec(2, None, **spec)}, logging.CRITICAL)
    try:
        with Client(cluster) as client:
            workers = client.scheduler_info(n_workers=-1)["workers"]
            gpu = next(a for a, w in workers.items() if w["name"] == "gpu-0")
            assert cluster_gpus(client) == 1
            assert _slots(client, None) == 4
            assert _slots(client, {"GPU": 1}) == 1
            n = 6
            marks = [tmp_path / "a", tmp_path / "b"]
            first = FirstTasks(_record, [str(m) for m in marks], ["f-a", "f-b"],
                               ["first a", "first b"], [[0]] * 3 + [[1]] * 3, [1] * n)
            shards = run_shard_tasks(client, _where, list(range(n)), None,
                                     [f"s-{i}" for i in range(n)],
                                     [f"shard {i}" for i in range(n)], total=n, done=0,
                                     desc="t", progress=False, first=first,
                                     resources={"GPU": 1})
            assert shards == [gpu] * n
            assert [m.read_text() for m in marks] == [gpu, gpu]  # first tasks too
    finally:
        cluster.close()


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 3,-1,4")
    assert visible_gpus() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-8f1c,MIG-12ab")
    assert visible_gpus() == ["GPU-8f1c", "MIG-12ab"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # not set: the devices torch sees
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert visible_gpus() == [str(i) for i in range(n)]
