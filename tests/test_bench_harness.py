"""The benchmark harness's arithmetic and its README table, and the inference
defaults the benchmarks chose (batch and threads)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from benchmarks._report import BEGIN, END, rows, table, update_readme
from benchmarks._results import paired_median
from benchmarks.inference import _scheduling

ROOT = Path(__file__).resolve().parents[1]
LATEST = ROOT / "benchmarks" / "results" / "latest.json"


def _task(worker, thread, start, stop):
    return {"worker": worker, "thread": thread,
            "startstops": [{"action": "transfer", "start": start - 1, "stop": start},
                           {"action": "compute", "start": start, "stop": stop}]}


def test_dask_share_counts_gaps_and_keeps_the_tail_apart():
    # thread A: starts at 0, 1 s gap between its tasks; thread B: starts 2 s late and
    # ends 4 s before A (tail); the graph spans 0..20 s on 2 threads = 40 thread-seconds
    stream = [_task("a", 1, 0, 9), _task("a", 1, 10, 20),
              _task("b", 1, 2, 8), _task("b", 1, 8, 16)]
    s = _scheduling(stream, nthreads=2)
    assert s["graph_wall_s"] == 20
    assert s["task_s"] == 9 + 10 + 6 + 8
    assert s["dask_share"] == pytest.approx((1 + 2) / 40)
    assert s["tail_share"] == pytest.approx(4 / 40)
    assert s["tasks_per_s"] == pytest.approx(4 / 20)


def test_a_thread_without_tasks_is_idle_tail_not_dask():
    s = _scheduling([_task("a", 1, 0, 10)], nthreads=2)
    assert s["dask_share"] == 0
    assert s["tail_share"] == pytest.approx(0.5)


def test_ratios_pair_each_run_with_itself():
    # a slow second run slows both sides; pairing keeps it out of the ratio, where the
    # ratio of medians would be 12 / 10 = 1.2, from whichever runs hold each median
    e2e, pure = [10.0, 20.0, 12.0], [9.8, 19.5, 10.0]
    assert paired_median(e2e, pure) == pytest.approx(20.0 / 19.5)
    assert paired_median([4.0], [2.0]) == 2.0
    with pytest.raises(ValueError):
        paired_median([1.0, 2.0], [1.0])


def test_readme_block_is_replaced_and_a_readme_without_markers_left_alone(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{BEGIN}\nold\n{END}\n\nafter\n")
    assert update_readme(readme, "| new |")
    assert readme.read_text() == f"# x\n\n{BEGIN}\n| new |\n{END}\n\nafter\n"
    readme.write_text("# no markers\n")
    assert not update_readme(readme, "| new |")
    assert readme.read_text() == "# no markers\n"


def test_latest_results_have_every_target_and_the_readme_carries_their_table():
    r = json.loads(LATEST.read_text())
    for pid in ("P1", "P2", "P3", "P4", "P5", "P6"):
        assert {"value", "target", "met"} <= set(r[pid]), pid
        assert isinstance(r[pid]["met"], bool)
    ids = {row[0] for row in rows(r)}
    assert {"P1", "P2", "P3", "P4", "P5", "P6", "sched", "cost"} <= ids
    text = (ROOT / "README.md").read_text()
    block = text[text.index(BEGIN) + len(BEGIN):text.index(END)].strip()
    assert block == table(r)
    assert r["date"][:10] in block and r["machine"] in block


def test_cpu_models_take_one_tile_per_call_and_gpus_128():
    from models import Runtime, call_batch, load_model

    assert call_batch(load_model("unet")) == 1
    assert call_batch(load_model("ukis-csmask:4b")) == 1

    class OnGpu:
        runtime = Runtime("cuda", "bf16")

    assert call_batch(OnGpu()) == 128


def test_fewer_shards_than_worker_threads_get_the_spare_cores(client):
    from inference import worker_threads

    cores = os.cpu_count() or 1
    assert worker_threads(client) == max(1, cores // 2)  # 2 workers x 1 thread
    assert worker_threads(client, tasks=1) == cores
    assert worker_threads(client, tasks=64) == max(1, cores // 2)
