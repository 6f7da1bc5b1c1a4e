"""The training loop: balanced patches from the store, AdamW with warmup + cosine,
validation mIoU with early stopping, best / last checkpoints, TensorBoard logs.

Every random choice comes from the seed: epoch ``e`` draws its patches from
``default_rng([seed, e])`` and seeds torch with ``seed * 1000 + e``, so a run is
deterministic on CPU and a resumed run continues exactly as an unbroken one.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from chunkstore import InputError, Store
from models import PRECISIONS, ModelSpec, TorchAdapter, match_bands, new_model, resolve

from ._checkpoints import has_checkpoint, load_last, save_best, save_last, saved_split
from ._data import SceneRef, labelled_scenes
from ._evaluate import split_confusion
from ._losses import LOSSES, make_loss
from ._metrics import IGNORE, scores
from ._plan import Plan, make_plan
from ._ranks import Ranks, join, leave, ranks_from_env, wrap
from ._sampler import MODES, chunk_weights, class_weights, draw
from ._split import ShardId
from ._stream import PatchStream, PlannedPatch, to_device

log = logging.getLogger("satchunk.train")
KINDS = ("unet", "segformer")
# options that shape the run: a resumed run must use the same ones
RUN_OPTIONS = ("epochs", "steps", "batch", "lr", "weight_decay", "patch", "sampler", "exponent",
               "loss", "class_weights", "seed")


@dataclass
class TrainConfig:
    collections: list[str]
    model: str = "unet"
    epochs: int = 20
    steps: int = 50           # optimizer steps per epoch
    batch: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patch: int | None = None  # default: the scenes' inner chunk
    sampler: str = "balanced"
    exponent: float = 1.0     # 0 = uniform ... 1 = fully balanced
    loss: str = "ce"
    class_weights: str = "none"
    seed: int = 0
    patience: int = 5         # epochs without a better val mIoU before stopping
    workers: int = 8          # host threads reading patches (0 reads on one)
    bands: list[str] | None = None
    indices: list[str] = field(default_factory=list)
    name: str | None = None
    version: str = "1"
    device: str = "auto"
    precision: str = "auto"   # auto: bf16 autocast on a GPU (fp16 + grad scaling without bf16)
    compile: bool = False     # torch.compile the model
    val_patches: int = 512    # cap on validation patches per epoch (evaluate reads all)

    def model_name(self) -> str:
        return self.name or f"{self.model.replace(':', '-')}-{self.collections[0]}"

    def check(self) -> None:
        bad = []
        if self.model.split(":")[0] not in KINDS:
            bad.append(f"--model {self.model!r}: use unet[:ENCODER] or segformer")
        for opt, v in (("--epochs", self.epochs), ("--steps", self.steps),
                       ("--batch", self.batch), ("--val-patches", self.val_patches)):
            if v < 1:
                bad.append(f"{opt} {v} must be at least 1")
        if not 0 < self.lr < float("inf"):  # NaN too
            bad.append(f"--lr {self.lr} must be a positive number")
        if self.sampler not in MODES:
            bad.append(f"--sampler {self.sampler!r}: use {' or '.join(MODES)}")
        if not 0 <= self.exponent <= 1:
            bad.append(f"--exponent {self.exponent} must be in [0, 1]")
        if self.loss not in LOSSES:
            bad.append(f"--loss {self.loss!r}: use {' or '.join(LOSSES)}")
        if self.class_weights not in ("auto", "none"):
            bad.append(f"--class-weights {self.class_weights!r}: use auto or none")
        if self.patience < 1:
            bad.append(f"--patience {self.patience} must be at least 1")
        if self.seed < 0:
            bad.append(f"--seed {self.seed} must be >= 0")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            bad.append(f"--device {self.device!r}: use auto, cpu, cuda or cuda:N")
        if self.workers < 0:
            bad.append(f"--workers {self.workers} must be >= 0")
        if self.precision not in PRECISIONS:
            bad.append(f"--precision {self.precision!r}: use {', '.join(PRECISIONS)}")
        if self.patch is not None and self.patch < 16:
            bad.append(f"--patch {self.patch} must be at least 16")
        if bad:
            raise InputError("; ".join(bad))


def _common_bands(scenes: Sequence[SceneRef]) -> list[str]:
    first = list(scenes[0].bands)
    return [b for b in first if all(b in s.bands for s in scenes[1:])]


def _norm_stats(stream: PatchStream, plan: Plan, patch: int, seed: int, n: int = 32
                ) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the model inputs (``stream.spec``, not normalized)
    over ``n`` training patches."""
    cands = plan.candidates["train"]
    rng = np.random.default_rng([seed, 10**6])
    picks = rng.choice(len(cands), size=min(n, len(cands)), replace=False)
    chosen = [PlannedPatch(int(cands.scene[i]), int(cands.y0[i]), int(cands.x0[i]))
              for i in picks]
    vals = []
    for hb in stream.batches(chosen, patch, len(chosen)):
        x, y = (t.numpy() for t in to_device(hb, stream, "cpu"))
        vals.append(x.transpose(1, 0, 2, 3)[:, y != IGNORE])
    vals = np.concatenate(vals, axis=1)
    mean = vals.mean(axis=1)
    std = np.maximum(vals.std(axis=1), 1e-6)
    return [float(v) for v in mean], [float(v) for v in std]


def prepare(store: Store, cfg: TrainConfig, split: dict[str, list[ShardId]] | None = None
            ) -> tuple[Plan, ModelSpec, int]:
    """Check everything and plan (with ``split`` when given; a resumed run passes
    its stored one), before anything is written: (plan, spec without
    normalization, patch size)."""
    cfg.check()
    scenes = labelled_scenes(store, cfg.collections)
    plan = make_plan(store, scenes, cfg.seed, split)
    chunk = min(s.chunk for s in scenes)
    patch = cfg.patch or chunk
    if patch > chunk:
        raise InputError(f"--patch {patch} is larger than the scenes' inner chunk ({chunk}): "
                         f"use --patch {chunk} or less, or re-ingest with --chunk {patch}")
    bands = tuple(cfg.bands or _common_bands(scenes))
    spec = new_model(cfg.model, bands=bands, classes=plan.classes, indices=tuple(cfg.indices),
                     name=cfg.model_name(), version=cfg.version, seed=cfg.seed).spec
    for s in scenes:
        match_bands(spec, s.bands, s.item)
    train_px = plan.candidates["train"].class_pixels
    missing = [c for c, n in zip(plan.classes, train_px, strict=True) if n == 0]
    if missing:
        log.warning("class(es) %s have no labelled pixel in the training shards (seed %d); "
                    "the model cannot learn them: try another --seed", ", ".join(missing),
                    cfg.seed)
    return plan, spec, patch


def train(store: Store, out: Store, cfg: TrainConfig, *, resume: bool = False,
          logdir: Path | None = None, progress: bool = True,
          on_epoch: Callable[[dict[str, Any]], None] | None = None,
          prepared: tuple[Plan, ModelSpec, int] | None = None,
          ranks: Ranks | None = None) -> dict[str, Any]:
    """Train; returns a summary. ``out`` receives the checkpoints; ``prepared`` is
    what :func:`prepare` returned for this run, when the caller checked already.
    With several ``ranks`` (default: torchrun's variables) every rank calls this; rank
    0 alone writes checkpoints and logs."""
    import torch

    plan, spec0, patch = prepared or prepare(store, cfg, saved_split(out) if resume else None)
    if has_checkpoint(out) and not resume:
        raise InputError(f"{out.uri} already holds a checkpoint: pass --resume to continue it "
                         "or choose another --out")
    ranks = ranks or ranks_from_env()
    rt = resolve(cfg.device, cfg.precision, cfg.compile)
    rt = replace(rt, device=join(ranks, rt.device))
    device = rt.device
    torch.use_deterministic_algorithms(True, warn_only=True)
    stream = PatchStream(store, plan.scenes, spec0, threads=cfg.workers, pin=rt.on_gpu)
    try:
        mean, std = _norm_stats(stream, plan, patch, cfg.seed)
        adapter = new_model(cfg.model, bands=spec0.bands, classes=spec0.classes,
                            indices=spec0.indices, name=spec0.name, version=spec0.version,
                            mean=tuple(mean), std=tuple(std), seed=cfg.seed, runtime=rt)
        spec, module = adapter.spec, adapter.module
        opt = torch.optim.AdamW(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        total = cfg.epochs * cfg.steps
        warm = max(1, total // 20)

        def lr_at(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            t = (step - warm) / max(1, total - warm)
            return 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

        schedule = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
        options = {k: getattr(cfg, k) for k in RUN_OPTIONS}
        state: dict[str, Any] = {"epoch": 0, "step": 0, "best_miou": -1.0, "best_epoch": None,
                                 "since_best": 0, "history": [], "options": options}
        if resume:
            state = load_last(out, module, spec, opt, schedule)
            spec = state.pop("spec")  # keep the saved normalization
            adapter.spec = spec
            changed = sorted(k for k, v in state.get("options", {}).items() if options.get(k) != v)
            if changed:
                was = ", ".join(f"{k}={state['options'][k]}" for k in changed)
                raise InputError(f"--resume: {', '.join(changed)} differ from the run at {out.uri} "
                                 f"(it used {was}); resume with the same options or train to "
                                 "another --out")
        evaluator = adapter
        if ranks.world > 1:  # training forwards through DDP; validation on the module alone
            adapter.forward_through(wrap(module, ranks, device))
            evaluator = TorchAdapter(module, spec, rt)
        weights = chunk_weights(plan.candidates["train"].counts, cfg.sampler, cfg.exponent)
        chunks = np.array([plan.scenes[i].chunk for i in plan.candidates["train"].scene])
        cw = None
        if cfg.class_weights == "auto":
            cw = torch.tensor(class_weights(plan.candidates["train"].class_pixels),
                              dtype=torch.float32, device=device)
        loss_fn = make_loss(cfg.loss, cw)
        scaler = torch.amp.GradScaler("cuda") if rt.precision == "fp16" and rt.on_gpu else None
        writer = _writer(logdir if ranks.main else None)
        val_plan = plan.patches("val")
        if len(val_plan) > cfg.val_patches:
            keep = np.random.default_rng([cfg.seed, 2]).choice(len(val_plan), cfg.val_patches,
                                                               replace=False)
            val_plan = [val_plan[i] for i in sorted(keep)]
        val_patch = max(s.chunk for s in plan.scenes)
        split = plan.split_json(cfg.seed)
        t_start = time.perf_counter()
        stopped = False
        for epoch in range(state["epoch"], cfg.epochs):
            if state["since_best"] >= cfg.patience:
                stopped = True
                break
            torch.manual_seed(cfg.seed * 1000 + epoch)
            rng = np.random.default_rng([cfg.seed, epoch])
            c = plan.candidates["train"]
            draws = draw(weights, cfg.steps * cfg.batch * ranks.world, rng, chunk=chunks,
                         patch=patch)
            patches = ranks.share([PlannedPatch(int(c.scene[d.candidate]), int(c.y0[d.candidate]),
                                                int(c.x0[d.candidate]), d.dy, d.dx, d.aug)
                                   for d in draws])
            t0 = time.perf_counter()
            losses, skipped = _epoch_steps(
                adapter, stream.batches(patches, patch, cfg.batch), stream, spec, rt, ranks,
                loss_fn, opt, schedule, scaler, state, writer,
                progress and ranks.main, f"epoch {epoch + 1}/{cfg.epochs}", cfg.steps)
            train_s = time.perf_counter() - t0
            cm = ranks.total(split_confusion(evaluator, stream, ranks.share(val_plan), val_patch,
                                             cfg.batch, progress and ranks.main, "validate"))
            val = scores(cm, spec.classes)
            loss_sum, loss_n = ranks.total(np.array([sum(losses), len(losses)], np.float64))
            row = {"epoch": epoch + 1, "step": state["step"],
                   "train_loss": float(loss_sum / loss_n) if loss_n else None,
                   "skipped_batches": skipped,
                   "val_miou": val["miou"], "train_seconds": round(train_s, 2),
                   "patches_per_second": round(len(patches) * ranks.world / train_s, 2)}
            state["history"].append(row)
            state["epoch"] = epoch + 1
            improved = val["miou"] is not None and val["miou"] > state["best_miou"]
            if improved:
                state.update(best_miou=val["miou"], best_epoch=epoch + 1, since_best=0)
            else:
                state["since_best"] += 1
            metrics = {"epoch": epoch + 1, "val": val, "history": state["history"],
                       "config": asdict(cfg)}
            if improved and ranks.main:
                save_best(out, module, spec, {**metrics, "best_epoch": epoch + 1}, split)
            if ranks.main:
                save_last(out, module, spec, metrics, opt, schedule, state)
            if writer is not None:
                writer.add_scalar("val/miou", val["miou"] or 0.0, state["step"])
                for cname, m in val["per_class"].items():
                    if m["iou"] is not None:
                        writer.add_scalar(f"val/iou/{cname}", m["iou"], state["step"])
                _upload_logs(out, writer)
            if on_epoch is not None and ranks.main:
                on_epoch(row)
    finally:
        stream.close()
        leave(ranks)
    if writer is not None:
        _upload_logs(out, writer)
        writer.close()
    return {"out": out.uri, "model_id": spec.model_id, "best_epoch": state["best_epoch"],
            "best_val_miou": state["best_miou"], "epochs_run": state["epoch"],
            "early_stopped": stopped, "seconds": round(time.perf_counter() - t_start, 2),
            "history": state["history"], "split": {k: len(v) for k, v in plan.split.items()},
            "classes": list(spec.classes), "patch": patch, "logdir": str(logdir) if logdir
            else None}


def _epoch_steps(adapter: Any, batches: Any, stream: PatchStream, spec: ModelSpec, rt: Any,
                 ranks: Ranks, loss_fn: Any, opt: Any, schedule: Any, scaler: Any,
                 state: dict[str, Any], writer: Any, progress: bool, desc: str, steps: int
                 ) -> tuple[list[float], int]:
    """One epoch's optimizer steps over ``batches``: (losses, batches skipped). A batch
    labelled only where its image is nodata teaches nothing: skipped on one process;
    with several, stepped with a zero loss so every rank takes part in each step."""
    import torch
    from tqdm import tqdm

    adapter.module.train()
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(rt.precision)
    losses: list[Any] = []  # on the device: no wait for the GPU until the epoch ends
    logged: list[tuple[int, float]] = []  # (step, learning rate) of each loss
    skipped = 0
    bar = tqdm(batches, total=steps, desc=desc, unit="step", disable=not progress, leave=False)
    for hb in bar:
        signal = bool((hb.label != IGNORE).any())
        if not signal and ranks.world == 1:
            skipped += 1
            continue
        x, y = to_device(hb, stream, rt.device, spec)
        if rt.on_gpu:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=adapter.device.type, dtype=amp or torch.float32,
                            enabled=amp is not None):
            logits = adapter.logits(x).float()
            loss = loss_fn(logits, y) if signal else logits.sum() * 0.0
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        schedule.step()
        state["step"] += 1
        if not signal:
            skipped += 1
            continue
        losses.append(loss.detach())
        logged.append((state["step"], schedule.get_last_lr()[0]))
        if progress and len(losses) % 10 == 1:
            bar.set_postfix(loss=f"{losses[-1].item():.3f}", lr=f"{logged[-1][1]:.2e}")
    values = torch.stack(losses).float().cpu().tolist() if losses else []
    if writer is not None:
        for v, (step, lr) in zip(values, logged, strict=True):
            writer.add_scalar("train/loss", v, step)
            writer.add_scalar("train/lr", lr, step)
    return values, skipped


def _writer(logdir: Path | None) -> Any:
    if logdir is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    logdir.mkdir(parents=True, exist_ok=True)
    return SummaryWriter(str(logdir))


def _upload_logs(out: Store, writer: Any) -> None:
    """Copy this run's TensorBoard event file next to the checkpoint (``OUT/logs/``);
    nothing else from the log folder."""
    writer.flush()
    f = Path(writer.file_writer.event_writer._file_name)
    out.write_bytes(f"logs/{f.name}", f.read_bytes())

