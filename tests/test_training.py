"""Training against the embedded S3 server on the real Sentinel-2 crop, with weak
labels from its own bands (NDWI > 0 water, NDVI > 0.4 vegetation, else other)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from chunkstore import InputError, open_store
from satchunk.cli import main

COLL, ITEM = "s2train", "small_full_data_nocloud"
CLASSES = ("water", "vegetation", "other")
FAST = ["--epochs", "1", "--steps", "5", "--patch", "64", "--batch", "4", "--workers", "2",
        "--bands", "blue,green,red,nir"]


def weak_labels(s2_dir, path):
    bands = {}
    for b in ("B03", "B04", "B08"):
        with rasterio.open(s2_dir / f"s2_{b}.jp2") as ds:
            bands[b] = ds.read(1).astype(np.float32)
            prof = ds.profile
    g, r, n = bands["B03"], bands["B04"], bands["B08"]
    ndvi, ndwi = (n - r) / np.maximum(n + r, 1), (g - n) / np.maximum(g + n, 1)
    lab = np.full(g.shape, 2, np.uint8)
    lab[ndvi > 0.4] = 1
    lab[ndwi > 0] = 0
    prof.update(driver="GTiff", dtype="uint8", count=1, nodata=255, compress="deflate")
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(lab, 1)
    return lab


@pytest.fixture(scope="module")
def env(s3_server, client, s2_dir, tmp_path_factory):
    """A store with the S2 crop (16 shards of 512, chunks of 64) and its weak labels."""
    from ingest import check_inputs, ingest_scenes

    e = s3_server.env("training")
    tif = tmp_path_factory.mktemp("labels") / "weak.tif"
    weak_labels(s2_dir, tif)
    st = open_store(e["SATCHUNK_STORE"], env=e)
    scenes = check_inputs([str(s2_dir)], COLL, labels=str(tif), classes=list(CLASSES),
                          shard=512, chunk=64)
    ingest_scenes(scenes, COLL, st, client, shard=512, chunk=64, progress=False)
    return e


@pytest.fixture
def cli(monkeypatch, env, tmp_path):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)  # TensorBoard logs go to runs/ here
    return open_store(env["SATCHUNK_STORE"], env=env)


def run_json(capsys, argv):
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def weights(store, key):
    from safetensors.numpy import load

    return load(store.read_bytes(key))


def test_train_predict_evaluate_closes_the_loop(capsys, cli, tmp_path):
    out = cli.url("models/loop/1")
    run_yaml = tmp_path / "run.yaml"  # options from a file; the command line wins
    run_yaml.write_text("epochs: 5\nsteps: 15\npatch: 64\nbatch: 8\n"
                        "indices: [ndvi, ndwi]\nbands: blue,green,red,nir\n")
    r = run_json(capsys, ["train", "--collection", COLL, "--out", out, "--epochs", "2",
                          "--config", str(run_yaml)])
    assert r["classes"] == list(CLASSES) and r["epochs_run"] == 2
    assert r["split"] == {"train": 12, "val": 2, "test": 2}
    assert r["best_val_miou"] > 0.5, r["history"]  # it learns (seeded, deterministic on CPU)
    ck = cli.child("models/loop/1")
    for f in ("model.safetensors", "config.json", "metrics.json", "split.json",
              "last/model.safetensors", "last/state.safetensors", "last/state.json"):
        assert ck.exists(f), f
    assert any("events.out.tfevents" in k for k in ck.list("logs"))
    spec = json.loads(ck.read_bytes("config.json"))
    assert spec["classes"] == list(CLASSES) and spec["indices"] == ["ndvi", "ndwi"]
    assert len(spec["mean"]) == 6 and all(s > 0 for s in spec["std"])
    split = json.loads(ck.read_bytes("split.json"))
    shards = [tuple(s) for k in ("train", "val", "test") for s in split[k]]
    assert len(shards) == len(set(shards)) == 16  # disjoint, every shard once

    # the trained checkpoint runs through distributed predict, straight from the store
    p = run_json(capsys, ["predict", ITEM, "--model", out])
    assert p[0]["model_id"] == spec["name"] + "-" + spec["version"]
    assert cli.exists(f"masks/{COLL}/{ITEM}/{p[0]['model_id']}.zarr/class/zarr.json")

    # evaluate: every labelled pixel of the test shards, checked independently here
    e = run_json(capsys, ["evaluate", "--model", out])
    assert e["split"] == "test" and e["shards"] == 2
    assert cli.exists("models/loop/1/eval/test_confusion.png")
    assert e["pixels"] == independent_check(cli, ck, split["test"], e)


def independent_check(store, ck, test_shards, result):
    """Predict each 64 px chunk of the test shards with the checkpoint, read through
    xarray (not the training dataset), and score with boolean masks."""
    import torch

    from chunkstore import open_scene
    from models import Radiometry, load_checkpoint, model_inputs

    adapter = load_checkpoint(ck.read_bytes, ck.uri)
    ds = open_scene(store, f"zarr/{COLL}/{ITEM}.zarr", mask_and_scale=False)
    refl, label = ds["reflectance"], ds["label"]
    enc = refl.attrs
    rad = Radiometry(enc["scale_factor"], enc["add_offset"], float(refl.attrs["_FillValue"]))
    names = [str(b) for b in ds["band"].values]
    use = [names.index(b) for b in ("blue", "green", "red", "nir")]
    preds, truths = [], []
    for _, _, sy, sx in test_shards:
        for cy in range(sy * 512, min(sy * 512 + 512, ds.sizes["y"]), 64):
            for cx in range(sx * 512, min(sx * 512 + 512, ds.sizes["x"]), 64):
                raw = refl[use, cy:cy + 64, cx:cx + 64].values
                lab = label[cy:cy + 64, cx:cx + 64].values.copy()
                x, valid = model_inputs(raw, ["blue", "green", "red", "nir"], adapter.spec, rad)
                h, w = lab.shape
                xp = np.zeros((x.shape[0], 64, 64), np.float32)
                xp[:, :h, :w] = x
                with torch.inference_mode():
                    pr = adapter.logits(torch.from_numpy(xp[None])).argmax(1)[0].numpy()
                lab[~valid] = 255
                preds.append(pr[:h, :w].ravel())
                truths.append(lab.ravel())
    pred, truth = np.concatenate(preds), np.concatenate(truths)
    keep = truth != 255
    pred, truth = pred[keep], truth[keep]
    for k, name in enumerate(CLASSES):
        t, p = truth == k, pred == k
        tp, fp, fn = int((t & p).sum()), int((~t & p).sum()), int((t & ~p).sum())
        m = result["per_class"][name]
        if tp + fp + fn:
            assert m["iou"] == pytest.approx(tp / (tp + fp + fn), abs=1e-9)
        if tp + fp:
            assert m["precision"] == pytest.approx(tp / (tp + fp), abs=1e-9)
        assert m["support"] == int(t.sum())
    assert result["overall_accuracy"] == pytest.approx(float((pred == truth).mean()), abs=1e-9)
    return int(keep.sum())


def test_same_seed_same_weights_and_resume_equals_unbroken(capsys, cli):
    from training import TrainConfig, train

    a, b = cli.url("models/det/a"), cli.url("models/det/b")
    two = ["--epochs", "2", *FAST[2:]]
    run_json(capsys, ["train", "--collection", COLL, "--out", a, *two])
    run_json(capsys, ["train", "--collection", COLL, "--out", b, *two])
    # the same run, interrupted after its first epoch, then resumed from the CLI
    cfg = TrainConfig(collections=[COLL], epochs=2, steps=5, patch=64, batch=4, workers=2,
                      bands=["blue", "green", "red", "nir"])

    def interrupt(row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cli, cli.child("models/det/c"), cfg, progress=False, on_epoch=interrupt)
    assert json.loads(cli.read_bytes("models/det/c/last/state.json"))["epoch"] == 1
    r = run_json(capsys, ["train", "--collection", COLL, "--out", cli.url("models/det/c"),
                          *two, "--resume"])
    assert r["epochs_run"] == 2 and len(r["history"]) == 2
    wa, wb, wc = (weights(cli, f"models/det/{v}/last/model.safetensors") for v in "abc")
    assert wa.keys() == wb.keys() == wc.keys()
    for k in wa:
        assert np.array_equal(wa[k], wb[k]), k
        assert np.array_equal(wa[k], wc[k]), k


def assert_refused(capsys, argv, *needles, store=None):
    code = main(argv)
    err = [ln for ln in capsys.readouterr().err.strip().splitlines()
           if ln.startswith("error")]
    assert code == 2 and len(err) == 1, err
    for n in needles:
        assert n in err[0], err[0]
    return err[0]


def test_bad_inputs_are_refused_before_any_write(capsys, cli, s2_dir, client, tmp_path):
    from ingest import check_inputs, ingest_scenes

    models_before = cli.list("models")
    runs_before = cli.list("runs")
    # a collection without labels
    scenes = check_inputs([str(s2_dir)], "nolabels", shard=1024, chunk=256)
    ingest_scenes(scenes, "nolabels", cli, client, shard=1024, chunk=256, progress=False)
    assert_refused(capsys, ["train", "--collection", "nolabels", *FAST], "no labelled scene",
                   "satchunk label")
    assert_refused(capsys, ["train", "--collection", "nope", *FAST], "'nope'", "catalog ls")
    # a class absent everywhere
    tif = tmp_path / "lab.tif"
    weak_labels(s2_dir, tif)
    scenes = check_inputs([str(s2_dir)], "absent", labels=str(tif),
                          classes=[*CLASSES, "snow"], shard=512, chunk=64)
    ingest_scenes(scenes, "absent", cli, client, shard=512, chunk=64, progress=False)
    assert_refused(capsys, ["train", "--collection", "absent", *FAST], "snow",
                   "no labelled pixel")
    # every label pixel is nodata: refused at ingest, before a scene is marked labelled
    with rasterio.open(tif, "r+") as ds:
        ds.write(np.full((ds.height, ds.width), 255, np.uint8), 1)
    with pytest.raises(InputError, match="no labelled pixel falls on scene"):
        check_inputs([str(s2_dir)], "empty", labels=str(tif), classes=list(CLASSES),
                     shard=512, chunk=64)
    # options
    assert_refused(capsys, ["train", "--collection", COLL, *FAST, "--patch", "128"],
                   "--patch 128", "inner chunk (64)")
    assert_refused(capsys, ["train", "--collection", COLL, *FAST, "--sampler", "x"],
                   "--sampler")
    assert_refused(capsys, ["train", "--collection", COLL, *FAST, "--lr", "nan"], "--lr nan")
    # an options file: Python tags are refused, never run; unknown keys and types named
    evil = tmp_path / "evil.yaml"
    evil.write_text(f"epochs: 1\nseed: !!python/object/apply:os.system ['touch {tmp_path}/x']\n")
    assert_refused(capsys, ["train", "--collection", COLL, "--config", str(evil)],
                   "evil.yaml", "line 2", "python/object/apply:os.system", "plain YAML")
    assert not (tmp_path / "x").exists()
    typo = tmp_path / "typo.yaml"
    typo.write_text("collection: [labelled]\nepoch: 3\n")
    assert_refused(capsys, ["train", "--config", str(typo)], "'epoch' is not an option",
                   "epochs")
    typo.write_text("collection: [labelled]\nepochs: lots\n")
    assert_refused(capsys, ["train", "--config", str(typo)], "epochs: 'lots' is not an int")
    typo.write_text("collection: [labelled]\nepochs:\n")
    assert_refused(capsys, ["train", "--config", str(typo)], "epochs: has no value")
    typo.write_text("lr: .nan\n")
    assert_refused(capsys, ["train", "--collection", COLL, "--config", str(typo)], "--lr nan")
    assert cli.list("models") == models_before and cli.list("runs") == runs_before
    # resume into a checkpoint of another model
    out = cli.url("models/fit/1")
    run_json(capsys, ["train", "--collection", COLL, "--out", out, *FAST])
    before = cli.read_bytes("models/fit/1/last/state.json")
    assert_refused(capsys, ["train", "--collection", COLL, "--out", out, *FAST,
                            "--model", "segformer", "--resume"], "does not fit")
    assert_refused(capsys, ["train", "--collection", COLL, "--out", out, *FAST],
                   "already holds a checkpoint", "--resume")
    assert_refused(capsys, ["train", "--collection", COLL, "--out", out, *FAST, "--lr",
                            "0.5", "--resume"], "lr differ", "lr=0.001")
    assert cli.read_bytes("models/fit/1/last/state.json") == before
    # an unreachable store
    assert_refused(capsys, ["train", "--collection", COLL, *FAST, "--endpoint-url",
                            "http://127.0.0.1:9"], "127.0.0.1:9")


def test_train_and_evaluate_on_a_running_cluster(capsys, cli, client):
    """--scheduler: the loop runs as one task on a worker of that cluster, its loader's
    threads inside that worker; epochs reach the job record as they end."""
    from chunkstore import list_runs

    out = cli.url("models/remote/1")
    address = client.scheduler.address
    r = run_json(capsys, ["train", "--collection", COLL, "--out", out, *FAST,
                          "--epochs", "2", "--scheduler", address])
    assert r["worker"] in client.scheduler_info()["workers"] and r["epochs_run"] == 2
    assert cli.exists("models/remote/1/model.safetensors")
    record = next(x for x in list_runs(cli) if x["kind"] == "train"
                  and x["config"]["out"] == out)
    assert record["status"] == "succeeded" and record["config"]["scheduler"] == address
    assert [h["epoch"] for h in record["history"]] == [1, 2]  # published live, per epoch
    assert record["dask_dashboard"] == client.dashboard_link
    e = run_json(capsys, ["evaluate", "--model", out, "--scheduler", address])
    assert e["worker"] in client.scheduler_info()["workers"] and e["pixels"] > 0
    assert cli.exists("models/remote/1/eval/test.json")


def _todays_patch(group, ref, spec, p, patch):
    """A patch as the loader before the stream made it (per patch, with zarr): the
    chunk's inputs, labels unset where an input is nodata, the window, then numpy's turns
    and flip."""
    from models import match_bands, model_inputs

    H, W = ref.shape
    rows, cols = slice(p.y0, min(p.y0 + ref.chunk, H)), slice(p.x0, min(p.x0 + ref.chunk, W))
    raw = np.asarray(group["reflectance"][:, rows, cols])
    lab = np.asarray(group["label"][rows, cols])
    idx, names = match_bands(spec, ref.bands, ref.item)
    x, valid = model_inputs(raw[list(idx)], names, spec, ref.radiometry)
    lab = np.where(valid, lab, 255).astype(np.uint8)
    h, w = lab.shape
    dy, dx = min(p.dy, max(h - patch, 0)), min(p.dx, max(w - patch, 0))
    if not (lab[dy:dy + patch, dx:dx + patch] != 255).any():
        ys, xs = np.nonzero(lab != 255)
        if len(ys):
            dy = int(np.clip(ys[0] - patch // 2, 0, max(h - patch, 0)))
            dx = int(np.clip(xs[0] - patch // 2, 0, max(w - patch, 0)))
    x, lab = x[:, dy:dy + patch, dx:dx + patch], lab[dy:dy + patch, dx:dx + patch]
    ph, pw = patch - lab.shape[0], patch - lab.shape[1]
    x = np.pad(x, ((0, 0), (0, ph), (0, pw)))
    lab = np.pad(lab, ((0, ph), (0, pw)), constant_values=255)
    x, lab = np.rot90(x, p.aug % 4, axes=(1, 2)), np.rot90(lab, p.aug % 4)
    if p.aug >= 4:
        x, lab = x[:, :, ::-1], lab[:, ::-1]
    return x, lab


def test_stream_gives_the_same_patches_as_the_loader_before_it(cli):
    """Same seed, same patches: pixels, labels and augmentation equal what the per-patch
    zarr loader made (inputs made after the batch crossed, as on a GPU), for random
    windows inside chunks and for whole chunks, the scene's short edge chunks included."""
    import zarr

    from models import new_model
    from training import (
        PatchStream,
        PlannedPatch,
        TrainConfig,
        chunk_weights,
        draw,
        prepare,
        to_device,
    )

    plan, spec0, _ = prepare(cli, TrainConfig(collections=[COLL], patch=48,
                                              bands=["blue", "green", "red", "nir"]))
    spec = new_model("unet", bands=spec0.bands, classes=spec0.classes, indices=("ndvi",),
                     mean=(0.1, 0.1, 0.1, 0.2, 0.3), std=(0.05, 0.05, 0.06, 0.1, 0.2)).spec
    c = plan.candidates["train"]
    d = draw(chunk_weights(c.counts), 96, np.random.default_rng(0), chunk=64, patch=48)
    windows = [PlannedPatch(int(c.scene[x.candidate]), int(c.y0[x.candidate]),
                            int(c.x0[x.candidate]), x.dy, x.dx, x.aug) for x in d]
    whole = [PlannedPatch(p.scene, p.y0, p.x0, aug=i % 8) for i, p in
             enumerate(plan.patches("train") + plan.patches("val") + plan.patches("test"))]
    ref = plan.scenes[0]
    edges = [p for p in whole if p.y0 + 64 > ref.shape[0] or p.x0 + 64 > ref.shape[1]]
    assert len(edges) > 5 and len({p.aug for p in windows}) == 8
    group = zarr.open_group(cli.zarr_store(ref.key, read_only=True), mode="r", zarr_format=3)
    stream = PatchStream(cli, plan.scenes, spec, threads=4)
    try:
        for patches, size in ((windows, 48), (whole, 64)):
            got = [to_device(hb, stream, "cpu") for hb in stream.batches(patches, size, 7)]
            x = np.concatenate([g[0].numpy() for g in got])
            y = np.concatenate([g[1].numpy() for g in got])
            assert x.shape == (len(patches), 5, size, size) and y.dtype == np.int64
            for i, p in enumerate(patches):
                rx, ry = _todays_patch(group, ref, spec, p, size)
                assert np.array_equal(x[i], rx), (i, p)
                assert np.array_equal(y[i], ry), (i, p)
            assert (y != 255).any(axis=(1, 2)).all()  # every patch holds a labelled pixel
    finally:
        stream.close()


def test_stream_names_a_missing_or_damaged_shard(cli):
    """A shard gone or altered after the run checked its manifest: the stream stops with
    the object's name, never fill."""
    from chunkstore import CorruptObjectError
    from training import PatchStream, TrainConfig, prepare

    plan, spec, _ = prepare(cli, TrainConfig(collections=[COLL], patch=64,
                                             bands=["blue", "green", "red", "nir"]))
    ref = plan.scenes[0]
    p = plan.patches("train")[0]
    key = f"{ref.key}/reflectance/c/0/{p.y0 // 512}/{p.x0 // 512}"
    good = cli.read_bytes(key)
    try:
        cli.delete_object(key)
        stream = PatchStream(cli, plan.scenes, spec)
        with pytest.raises(CorruptObjectError, match=f"{key} is missing"):
            list(stream.batches([p], 64, 1))
        bad = bytearray(good)
        bad[100] ^= 0xFF  # inside the first inner chunk's compressed bytes
        cli.write_bytes(key, bytes(bad))
        chunks = [q for q in plan.patches("train") + plan.patches("val") + plan.patches("test")
                  if (q.y0 // 512, q.x0 // 512) == (p.y0 // 512, p.x0 // 512)]
        stream = PatchStream(cli, plan.scenes, spec)
        with pytest.raises(CorruptObjectError, match=f"{key} is damaged"):
            list(stream.batches(chunks, 64, len(chunks)))
    finally:
        cli.write_bytes(key, good)


def test_bf16_autocast_trains_on_a_cpu(capsys, cli):
    from models import load_checkpoint

    out = cli.url("models/bf16/1")
    r = run_json(capsys, ["train", "--collection", COLL, "--out", out, *FAST, "--device",
                          "cpu", "--precision", "bf16"])
    assert np.isfinite(r["history"][0]["train_loss"])
    metrics = json.loads(cli.read_bytes("models/bf16/1/last/metrics.json"))
    assert metrics["config"]["precision"] == "bf16"
    adapter = load_checkpoint(cli.child("models/bf16/1").read_bytes, out)
    assert adapter.spec.classes == CLASSES


def test_ranks_draw_disjoint_balanced_shares_of_one_draw():
    from training import Ranks, chunk_weights, draw

    counts = np.array([[100, 0, 0]] * 28 + [[0, 90, 10]] * 3 + [[0, 0, 100]] * 9)
    w = chunk_weights(counts, "balanced")
    d = draw(w, 4000, np.random.default_rng([3, 1]), chunk=64, patch=32)
    shares = [Ranks(r, 4).share(list(enumerate(d))) for r in range(4)]
    seen = [i for s in shares for i, _ in s]
    assert sorted(seen) == list(range(4000)) and len(set(seen)) == 4000  # disjoint, whole
    assert {len(s) for s in shares} == {1000}
    share = counts / counts.sum(axis=1, keepdims=True)

    def exposure(picks):
        e = share[[x.candidate for x in picks]].sum(axis=0)
        return e / e.sum()

    whole = exposure(d)
    uniform = share.mean(axis=0)
    assert uniform[1] < 0.1 and np.all(np.abs(whole - 1 / 3) < 0.05)  # balanced up
    for s in shares:  # each rank sees the classes as the whole draw does
        assert np.all(np.abs(exposure([x for _, x in s]) - whole) < 0.03)
    assert Ranks().share(d) == d


def test_two_processes_train_with_torchrun_and_resume(cli, env, tmp_path):
    """torchrun, 2 CPU processes (gloo): one checkpoint writer and one run record per
    launch; stopped after its first epoch, --resume continues on 2 processes; the
    checkpoint loads."""
    import os
    import subprocess
    import sys
    import time

    import psutil

    from chunkstore import list_runs
    from models import load_checkpoint

    out = cli.url("models/ddp/1")
    runs_before = len(list_runs(cli))
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
            "2", "-m", "satchunk", "train", "--collection", COLL, "--out", out,
            *FAST, "--epochs", "4", "--steps", "25", "--device", "cpu", "--json"]
    environ = {**os.environ, **env, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environ,
                             cwd=tmp_path, start_new_session=True)
    state = "models/ddp/1/last/state.json"
    try:
        deadline = time.monotonic() + 300
        while not cli.exists(state) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cli.exists(state), first.communicate()[1][-3000:]
    finally:  # torchrun and both ranks (sessions of their own), mid-run
        for p in [*psutil.Process(first.pid).children(recursive=True),
                  psutil.Process(first.pid)]:
            p.kill()
        first.communicate()
    done = json.loads(cli.read_bytes(state))
    assert 1 <= done["epoch"] < 4
    second = subprocess.run([*argv, "--resume"], capture_output=True, text=True, env=environ,
                            cwd=tmp_path, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    r = json.loads(second.stdout)  # rank 0 alone answers
    assert r["epochs_run"] == 4 and [h["epoch"] for h in r["history"]] == [1, 2, 3, 4]
    assert r["history"][:done["epoch"]] == done["history"]
    end = json.loads(cli.read_bytes(state))
    assert end["epoch"] == 4 and end["step"] == 100  # 25 steps an epoch, taken on each rank
    assert len(list_runs(cli)) == runs_before + 2  # one record per launch, not per rank
    adapter = load_checkpoint(cli.child("models/ddp/1").read_bytes, out)
    assert adapter.spec.classes == CLASSES


def test_two_ranks_train_on_a_running_cluster(capsys, cli, client):
    """--scheduler --ranks 2: one DDP rank per worker (gloo), rank 0 publishing the
    epochs to one job record and writing the checkpoint; more ranks than workers, or
    --ranks without a cluster, are refused before anything is written."""
    from chunkstore import list_runs
    from models import load_checkpoint

    out = cli.url("models/ranks/1")
    address = client.scheduler.address
    r = run_json(capsys, ["train", "--collection", COLL, "--out", out, *FAST, "--epochs", "2",
                          "--device", "cpu", "--scheduler", address, "--ranks", "2"])
    assert r["epochs_run"] == 2 and sorted(r["workers"]) == sorted(client.nthreads())
    state = json.loads(cli.read_bytes("models/ranks/1/last/state.json"))
    assert state["step"] == 10  # 5 steps an epoch, each taken by both ranks together
    record = next(x for x in list_runs(cli) if x["kind"] == "train"
                  and x["config"]["out"] == out)
    assert record["status"] == "succeeded" and record["config"]["ranks"] == 2
    assert [h["epoch"] for h in record["history"]] == [1, 2]
    assert load_checkpoint(cli.child("models/ranks/1").read_bytes, out).spec.classes == CLASSES
    runs = len(list_runs(cli))
    assert_refused(capsys, ["train", "--collection", COLL, "--out", cli.url("models/ranks/2"),
                            *FAST, "--scheduler", address, "--ranks", "3"],
                   "--ranks 3", "has 2 worker(s)")
    assert_refused(capsys, ["train", "--collection", COLL, *FAST, "--ranks", "2"],
                   "--scheduler", "torchrun")
    assert not cli.exists("models/ranks/2/config.json")
    assert len(list_runs(cli)) == runs  # refused runs leave no record
