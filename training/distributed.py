"""Several ranks under torchrun: who does what, and how they agree.

Rank 0 alone talks to W&B, writes metrics.jsonl, run_status.json and the cost ledger, holds the
output-dir lock, applies retention and deletes checkpoints. Every rank writes what a resume needs
of it (its RNG state) into the shared checkpoint. A decision that must be the same everywhere —
which checkpoint to resume, whether to stop now — is taken once and shared.
Without torchrun (WORLD_SIZE unset or 1) every function here is a no-op.
"""

from __future__ import annotations

import contextlib
import os


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def active() -> bool:
    import torch.distributed as dist

    return world_size() > 1 and dist.is_available() and dist.is_initialized()


def init(has_cuda: bool) -> None:
    """Join the process group early, so ranks can agree before the Trainer exists (it reuses it)."""
    if world_size() <= 1:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        if has_cuda:
            import torch

            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if has_cuda else "gloo")


def barrier() -> None:
    if active():
        import torch.distributed as dist

        dist.barrier()


@contextlib.contextmanager
def main_first():
    """Rank 0 runs the block first (filling caches: the stand-in build, dataset downloads), then
    the others, who find the work done."""
    if not is_main():
        barrier()
    try:
        yield
    finally:
        if is_main():
            barrier()


def finish() -> None:
    """Wait for every rank, then leave the process group."""
    if active():
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()


def share(value):
    """Rank 0's `value`, on every rank."""
    if not active():
        return value
    import torch.distributed as dist

    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def decided_on_main(decide):
    """`decide()` run on rank 0 alone, its result (or the UserError it raised) on every rank."""
    from training.errors import UserError

    outcome = None
    if is_main():
        try:
            outcome = decide()
        except UserError as error:
            outcome = error
    outcome = share(outcome)
    if isinstance(outcome, UserError):
        raise outcome
    return outcome


def any_rank(flags: list[bool]) -> list[bool]:
    """For each flag, whether it is set on at least one rank."""
    return [bool(v) for v in largest([1 if f else 0 for f in flags])]


def largest(values: list[int]) -> list[int]:
    """For each value, the largest any rank holds."""
    if not active():
        return list(values)
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.int64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return [int(v) for v in tensor.tolist()]


def gather_on_main(value) -> list | None:
    """Every rank's `value`, in rank order, on rank 0 (None on the others)."""
    if not active():
        return [value]
    import torch.distributed as dist

    gathered = [None] * world_size() if is_main() else None
    dist.gather_object(value, gathered, dst=0)
    return gathered


def my_share(count: int) -> range:
    """The indices of `count` items this rank works on: every world_size-th, from its rank."""
    return range(rank(), count, world_size())
