"""The model jobs, ``train``, ``evaluate`` and ``export-onnx``: like the scene jobs, one
function each, shared by the CLI, the demo and the benchmarks. With ``Place.scheduler``
set, the training loop (or the evaluation) runs as one task on a worker of that cluster
(e.g. the GPU node) while this process reports its progress."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chunkstore import InputError, Store, model_key, open_store
from models import check_device, resolve

from .place import DEFAULT_PLACE, Place
from .records import update_run


@dataclass(frozen=True)
class TrainOptions:
    """A training run: ``config`` (``training.TrainConfig``) and where it goes."""

    config: Any  # training.TrainConfig
    out: str | None = None      # s3://... or a directory (default: STORE/models/NAME/VERSION)
    resume: bool = False        # continue from OUT/last
    logdir: str | None = None   # TensorBoard folder (default: runs/RUN-ID)
    tensorboard: bool = True    # write TensorBoard event files at all
    ranks: int = 1              # DDP ranks, one per worker of the --scheduler cluster


def checkpoint_store(st: Store, out: str | None, cfg: Any) -> Store:
    """Where a run's checkpoints go: ``out``, or ``STORE/models/NAME/VERSION``."""
    if out:
        return open_store(out, st.endpoint_url).with_credentials(st.credentials)
    return st.child(model_key(cfg.model_name(), cfg.version))


def train_job(opts: TrainOptions, place: Place = DEFAULT_PLACE, *,
              on_epoch: Callable[[dict[str, Any]], None] | None = None,
              echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train a model on patches streamed from the store; ``on_epoch`` gets each epoch's
    row as it ends, ``echo`` the line that says where checkpoints and logs go."""
    from training import prepare, ranks_from_env, saved_split
    from training import train as run_training

    cfg = opts.config
    if not cfg.collections:
        raise InputError("name the labelled collection(s): --collection C (or collection: "
                         "in --config)")
    if opts.ranks < 1:
        raise InputError(f"--ranks {opts.ranks} must be at least 1")
    if opts.ranks > 1 and place.scheduler is None:
        raise InputError(f"--ranks {opts.ranks} runs one rank per worker of a running cluster: "
                         "add --scheduler tcp://HOST:8786, or on one machine start the command "
                         "with torchrun --nproc-per-node N")
    st = place.checked()
    dest = checkpoint_store(st, opts.out, cfg)
    # every input checked before anything is written; a resumed run keeps its split
    prepared = prepare(st, cfg, saved_split(dest) if opts.resume else None)
    dest.check()  # reachable and usable before an epoch is spent
    config = dataclasses.asdict(cfg) | {"out": dest.uri, "resume": opts.resume,
                                        "ranks": opts.ranks}

    def work(record: dict[str, Any]) -> dict[str, Any]:
        tb = Path(opts.logdir or Path("runs") / record["run_id"])
        if echo is not None:
            logs = (f"tensorboard --logdir {tb}" if place.scheduler is None
                    else f"the event file goes to {dest.uri}/logs")
            echo(f"checkpoints -> {dest.uri}; TensorBoard: {logs}")

        def epoch_ended(row: dict[str, Any]) -> None:
            record.setdefault("history", []).append(row)  # the dashboard's live curves
            update_run(st, record)
            if on_epoch is not None:
                on_epoch(row)

        if place.scheduler is None:
            return run_training(st, dest, cfg, resume=opts.resume,
                                logdir=tb if opts.tensorboard else None,
                                progress=place.progress, on_epoch=epoch_ended,
                                prepared=prepared)
        from .remote import run_remote, train_on_ranks, train_task

        args = (st.without_credentials(), dest.without_credentials(), st.credentials, cfg,
                opts.resume, prepared, opts.logdir)
        if opts.ranks > 1:
            return train_on_ranks(place.scheduler, st, record, opts.ranks, cfg.device, *args,
                                  quiet=not place.progress, on_event=epoch_ended)
        return run_remote(place.scheduler, st, record, train_task, *args,
                          quiet=not place.progress, on_event=epoch_ended)

    config["scheduler"] = place.scheduler
    if not ranks_from_env().main:  # under torchrun: rank 0 keeps the record and the logs
        return run_training(st, dest, cfg, resume=opts.resume, progress=False,
                            prepared=prepared)
    return place.record(st, "train", config, work)


@dataclass(frozen=True)
class EvaluateOptions:
    model: str  # a checkpoint: s3://.../models/NAME/VERSION or a directory
    collections: Sequence[str] | None = None
    split: str = "test"
    batch: int = 8
    workers: int = 8  # host threads reading patches
    device: str = "auto"  # auto | cpu | cuda | cuda:N


def evaluate_job(opts: EvaluateOptions, place: Place = DEFAULT_PLACE) -> dict[str, Any]:
    """Per-class scores and the confusion matrix of a checkpoint over a split."""
    from training import evaluate_checkpoint

    check_device(opts.device)
    if place.scheduler is None:
        resolve(opts.device)  # a GPU asked for and absent: one line, before any record
    st = place.checked()
    ckpt = (open_store(opts.model.rstrip("/"), st.endpoint_url).with_credentials(st.credentials)
            if "://" in opts.model else open_store(opts.model))
    collections = list(opts.collections) if opts.collections else None
    config = {"model": ckpt.uri, "collections": collections, "split": opts.split,
              "device": opts.device, "scheduler": place.scheduler}

    def work(record: dict[str, Any]) -> dict[str, Any]:
        if place.scheduler is None:
            return evaluate_checkpoint(st, ckpt, collections, opts.split, batch=opts.batch,
                                       workers=opts.workers, progress=place.progress,
                                       device=opts.device)
        from .remote import evaluate_task, run_remote

        return run_remote(place.scheduler, st, record, evaluate_task, st.without_credentials(),
                          ckpt.without_credentials(), st.credentials, collections, opts.split,
                          opts.batch, opts.workers, opts.device, quiet=not place.progress)

    return place.record(st, "evaluate", config, work)


def export_onnx_job(model: str, out: str) -> dict[str, Any]:
    """A torch model (``unet``, ``segformer`` or a checkpoint folder) as ONNX with a
    dynamic batch axis, checked against torch; a ``.json`` sidecar goes next to it."""
    from models import export_onnx, load_model

    if not out.lower().endswith(".onnx"):
        raise InputError(f"{out}: name the output MODEL.onnx (a MODEL.json sidecar goes next "
                         "to it)")
    return export_onnx(load_model(model), out)
