"""Multi-process training (``accelerate launch`` / ``torchrun``): which process this is, and the few collective steps
the drivers need beyond what the Trainer does itself — one run directory chosen by rank 0 and broadcast, rank-0-only
writes, a barrier before other ranks read what rank 0 wrote.

Single-process runs never touch ``torch.distributed``: every helper is a no-op when ``WORLD_SIZE`` is 1.

On CPU, ``accelerate launch --cpu --num_processes N`` starts ONE process unless MPI is installed (accelerate's CPU
launcher is ``mpirun``); multi-process CPU training goes through accelerate's torchrun launcher with the CPU flag in
the environment — ``ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes N …`` (gloo backend).
:func:`check_launch` turns both misconfigurations into a clear error instead of a silent single-process run.
"""

from __future__ import annotations

import os
from typing import Any, Callable, TypeVar

T = TypeVar("T")

_RANK_VARS = ("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "MV2_COMM_WORLD_RANK")
_SIZE_VARS = ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")
CPU_COMMAND = "ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes N -m empathkit.cli.main train …"


def _env_int(names: tuple[str, ...], default: int) -> int:
    for n in names:
        if os.environ.get(n, "").strip():
            return int(os.environ[n])
    return default


def world_size() -> int:
    """Number of training processes (from the launcher's environment; 1 outside a launcher)."""
    return _env_int(_SIZE_VARS, 1)


def rank() -> int:
    return _env_int(_RANK_VARS, 0)


def is_main() -> bool:
    """True on the process that writes the run directory (rank 0; always true in a single process)."""
    return rank() == 0


def _use_cpu() -> bool:
    return os.environ.get("ACCELERATE_USE_CPU", "false").strip().lower() in ("1", "true", "yes")


def check_launch() -> None:
    """Refuse launches that would silently train the wrong way (see the module docstring)."""
    from empathkit.errors import ConfigError

    if world_size() == 1 and _use_cpu() and os.environ.get("MASTER_PORT"):
        # accelerate's simple (non-MPI) CPU launcher sets MASTER_PORT only when more than one process was asked for
        raise ConfigError("`accelerate launch --cpu --num_processes N` started ONE process (without MPI accelerate "
                          f"cannot start more on CPU); for multi-process CPU training run: {CPU_COMMAND}")
    if world_size() > 1 and not _use_cpu():
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"{world_size()} processes were launched but there is no GPU, so they would train "
                              f"independently; for multi-process CPU training (gloo) run: {CPU_COMMAND}")


def _init() -> None:
    """Join the process group the Trainer would create (accelerate's ``PartialState``, same CPU/GPU choice)."""
    import torch.distributed as dist

    if not dist.is_initialized():
        from accelerate import PartialState

        PartialState(cpu=_use_cpu())


def barrier() -> None:
    """Wait until every process got here (no-op in a single process)."""
    if world_size() > 1:
        import torch.distributed as dist

        _init()
        dist.barrier()


def main_then_broadcast(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and give its (picklable) result to every process."""
    if world_size() == 1:
        return fn()
    import torch.distributed as dist

    _init()
    box: list[Any] = [fn() if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]
