"""Several processes training one model (``torchrun``, or one task per Dask worker):
who this process is, the process group, each rank's share of an epoch's patches, and
sums over ranks.

One process is the whole run unless ``WORLD_SIZE`` (set by ``torchrun``) or the job
(``train --scheduler ... --ranks N``) says more; then every rank draws the epoch's
patches from the same seed and takes every ``world``-th one from its rank on, so the
ranks' patches are disjoint and together are the one-process draw of ``world`` times
the patches, balanced as it is.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np

from chunkstore import InputError

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local: int = 0  # this rank's GPU on its machine
    address: str | None = None  # rank 0's HOST:PORT to meet at (None: torchrun's variables)

    @property
    def main(self) -> bool:
        """The rank that writes checkpoints, logs and the run record."""
        return self.rank == 0

    def share(self, items: Sequence[T]) -> list[T]:
        """This rank's part of ``items``: every ``world``-th from ``rank``."""
        return list(items[self.rank::self.world])

    def total(self, values: np.ndarray) -> np.ndarray:
        """``values`` summed over every rank (float64 or int64 arrays)."""
        if self.world == 1:
            return values
        import torch
        import torch.distributed as dist

        t = torch.from_numpy(np.ascontiguousarray(values))
        if dist.get_backend() == "nccl":
            t = t.cuda()
        dist.all_reduce(t)
        return t.cpu().numpy()


def ranks_from_env(env: Mapping[str, str] | None = None) -> Ranks:
    """The :class:`Ranks` torchrun's variables describe (one process without them)."""
    env = os.environ if env is None else env
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank, local = int(env.get("RANK", "0")), int(env.get("LOCAL_RANK", "0"))
    except ValueError:
        raise InputError("WORLD_SIZE, RANK and LOCAL_RANK must be integers: start several "
                         "training processes with torchrun") from None
    if world < 1 or not 0 <= rank < world:
        raise InputError(f"RANK {rank} is not in 0..WORLD_SIZE-1 ({world}): start several "
                         "training processes with torchrun")
    return Ranks(rank, world, local)


def join(ranks: Ranks, device: str) -> str:
    """Join the process group (NCCL between GPUs, gloo between CPUs); the device this
    rank trains on (its own GPU)."""
    if ranks.world == 1:
        return device
    import torch
    import torch.distributed as dist

    if device.startswith("cuda"):
        device = f"cuda:{ranks.local}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if ranks.address:  # tasks on Dask workers: a rank lost fails the others in time
            dist.init_process_group(backend, init_method=f"tcp://{ranks.address}",
                                    rank=ranks.rank, world_size=ranks.world,
                                    timeout=timedelta(minutes=10))
        else:
            dist.init_process_group(backend)
    return device


def leave(ranks: Ranks) -> None:
    if ranks.world > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def wrap(module: Any, ranks: Ranks, device: str) -> Any:
    """``module`` for training: itself, or under DistributedDataParallel."""
    if ranks.world == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[ranks.local] if device.startswith(
        "cuda") else None)
