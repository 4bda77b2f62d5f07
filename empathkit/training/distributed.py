"""Multi-process training (``accelerate launch`` / ``torchrun``): which process this is, and the few collective steps
the drivers need beyond what the Trainer does itself — one run directory chosen by rank 0 and broadcast, rank-0-only
writes, a barrier before other ranks read what rank 0 wrote — and, for state outside the Trainer's model (REG's joint
query encoder), gradient averaging, long rank-0 work the others wait for, gathering a value from every rank, and a
weights digest to check that the copies stayed identical.

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


# ------------------------------------------------------------------------------------------------------------------
# helpers for state the Trainer does not manage (REG's joint query encoder, reg/joint.py)
WAIT_TIMEOUT_S = 24 * 3600  # how long main_first's other ranks wait for rank 0


def main_first(fn: Callable[[], T]) -> T:
    """Like :func:`main_then_broadcast` for long work (e.g. model decodes into a cache file the other ranks read
    next): ``fn`` runs on rank 0 while the others wait in a gloo group with a long timeout (``WAIT_TIMEOUT_S``);
    every process returns ``fn``'s (picklable) result once rank 0 is done. An exception on rank 0 is raised there
    and, as a RuntimeError naming it, on the other ranks."""
    if world_size() == 1:
        return fn()
    import torch.distributed as dist

    _init()
    # a gloo group of its own with a long timeout: the default group's (30 min; NCCL's watchdog on GPUs) would
    # kill ranks waiting for a long rank-0 job. Made per call (collectively) and torn down after a barrier, so no
    # extra group outlives the call (a peer leaving while another still reads aborts the reader).
    from datetime import timedelta

    group = dist.new_group(backend="gloo", timeout=timedelta(seconds=WAIT_TIMEOUT_S))
    box: list[Any] = [None]
    err: BaseException | None = None
    try:
        if is_main():
            try:
                box[0] = ("ok", fn())
            except BaseException as e:  # noqa: BLE001 — told to the other ranks, then re-raised
                err, box[0] = e, ("error", f"{type(e).__name__}: {e}")
        dist.broadcast_object_list(box, src=0, group=group)
        dist.barrier(group=group)
    finally:
        dist.destroy_process_group(group)
    if err is not None:
        raise err
    status, value = box[0]
    if status != "ok":
        raise RuntimeError(f"rank 0 failed: {value}")
    return value


def all_gather(obj: T) -> list[T]:
    """Every process's (picklable) ``obj``, by rank (``[obj]`` in a single process)."""
    if world_size() == 1:
        return [obj]
    import torch.distributed as dist

    _init()
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def average_gradients(params) -> int:
    """Replace each parameter's ``.grad`` by its mean over the processes — what DDP does for the modules it wraps,
    for parameters it does not — in one all-reduce (no-op in a single process; returns the number of parameters
    given a gradient). A missing gradient counts as zeros when another rank has one, and a parameter without a
    gradient on every rank keeps ``None`` (so an optimiser skips it everywhere, as in one process). The reduction
    runs on the collective's device (CUDA under NCCL) and the result is copied back to each gradient's device and
    dtype; every rank ends with bit-identical gradients."""
    if world_size() == 1:
        return 0
    import torch
    import torch.distributed as dist

    _init()
    params = [p for p in params if p.requires_grad]
    if not params:
        return 0
    dev = torch.device("cuda", torch.cuda.current_device()) if "nccl" in str(dist.get_backend()) \
        else torch.device("cpu")
    has = torch.tensor([float(p.grad is not None) for p in params], device=dev)
    flat = torch.cat([has] + [(p.grad if p.grad is not None else torch.zeros_like(p)).detach().reshape(-1)
                              .to(dev, torch.float32) for p in params])
    dist.all_reduce(flat)
    flat /= world_size()
    present = flat[:len(params)].cpu().tolist()  # > 0: some rank had a gradient
    offset, given = len(params), 0
    for p, any_grad in zip(params, present):
        k = p.numel()
        if any_grad > 0:
            g = flat[offset:offset + k].view_as(p).to(p.device, p.grad.dtype if p.grad is not None else p.dtype)
            p.grad = g.clone() if p.grad is None else p.grad.copy_(g)
            given += 1
        offset += k
    return given


def weights_digest(module) -> str:
    """SHA-256 of a module's state (names and raw bytes, sorted by name): equal digests = identical weights (the
    check that data-parallel copies stayed in step)."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
