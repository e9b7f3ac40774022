"""Training on several processes with ``torch.distributed``: which rank this is, and the few collectives isscli needs.

``torchrun --nproc-per-node N -m isscli train …`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and a rendezvous in their environment; :func:`start` joins the
process group (gloo on CPUs, NCCL on GPUs) and every part of a run asks :func:`current` where it
stands. The model is wrapped in ``DistributedDataParallel``, which averages the data gradients;
everything else is made identical on every rank by construction: the weights are identical, so
the group-Lasso gradient, τ-thresholding, L1, the masks and the λ controller — all functions of
the weights and of losses that :func:`all_sum` makes global — take the same decisions
everywhere. Only rank 0 evaluates (the score is broadcast), prints, logs and writes files.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch.distributed.distributed_c10d import PrefixStore
from torch.distributed.rendezvous import rendezvous

from isscli.io.errors import IsscliError

Result = TypeVar("Result")


@dataclass(frozen=True)
class Ranks:
    """This process's place: rank ``rank`` of ``world``."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def share(self, count: int) -> slice:
        """This rank's contiguous share of ``count`` items (which ``world`` must divide)."""
        size = count // self.world
        return slice(self.rank * size, (self.rank + 1) * size)


def current() -> Ranks:
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size())
    return Ranks()


def launched() -> bool:
    """Whether torchrun (or another launcher) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


class RankLost(IsscliError):
    """Another rank of the run died (killed, out of memory, its machine gone): this one cannot go on alone. Not a
    bug and not bad input — the run is resumable, so it has its own exit status (75, EX_TEMPFAIL: try again)."""

    exit_code = 75


#: What gloo and NCCL say when a peer disappears in the middle of a collective.
PEER_GONE = ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "Socket Timeout",
             "NCCL communicator was aborted", "remote process exited")


def lost_rank(error: BaseException, resume: str) -> RankLost | None:
    """The one-line error for a collective that failed because another rank is gone, or None (another failure)."""
    if not launched() or not isinstance(error, RuntimeError):
        return None
    distributed_error = isinstance(error, getattr(dist, "DistError", ()))
    if not distributed_error and not any(sign in str(error) for sign in PEER_GONE):
        return None
    rank = int(os.environ.get("RANK", "0"))
    return RankLost(f"rank {rank} lost contact with another rank of the run ({str(error).splitlines()[0][-80:]})",
                    f"the run is resumable: torchrun --max-restarts restarts it from {resume}; or rerun the same "
                    "command with `resume`")


def restarted() -> bool:
    """Whether torchrun restarted the group after a failure (``--max-restarts``): the run continues."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0


def start(device: torch.device) -> tuple[Ranks, torch.device, bool]:
    """Join the process group of a launched run (gloo on CPU, NCCL on CUDA); the ranks, this rank's device, and
    whether this call made the group (and should end it)."""
    if not launched() or current().active:
        return current(), device, False
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    try:
        # torchrun keeps one store across restarts: a fresh prefix per attempt hides the last attempt's keys
        # (a killed rank's address among them), so that the restarted group meets itself, not its ghost
        store, rank, world = next(rendezvous("env://"))
        attempt = PrefixStore(f"isscli/attempt-{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", store=attempt, rank=rank,
                                world_size=world)
    except (RuntimeError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise IsscliError(f"cannot join the process group ({reason})",
                          "start the ranks with torchrun, e.g. torchrun --nproc-per-node 2 -m isscli train …") from None
    return current(), device, True


def stop() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(values: Sequence[float]) -> list[float]:
    """Element-wise sums over the ranks (the values themselves on one process)."""
    if not current().active:
        return list(values)
    tensor = torch.tensor(list(values), dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.tolist()


def on_main(work: Callable[[], Result]) -> Result:
    """Run ``work`` on rank 0 only and give every rank its result (a validation pass, a test score)."""
    ranks = current()
    if not ranks.active:
        return work()
    box: list[Any] = [work() if ranks.main else None]
    dist.broadcast_object_list(box, src=0)
    result: Result = box[0]
    return result


def gather_columns(tensor: torch.Tensor, dim: int) -> torch.Tensor:
    """Every rank's equal-sized ``tensor`` joined along ``dim`` in rank order (the whole batch of streams)."""
    if not current().active:
        return tensor
    pieces = [torch.empty_like(tensor) for _ in range(current().world)]
    dist.all_gather(pieces, tensor.contiguous())
    return torch.cat(pieces, dim=dim)


def check_divides(count: int, what: str, name: str) -> None:
    ranks = current()
    if ranks.active and count % ranks.world:
        raise IsscliError(f"`{name}` {count} is not a multiple of the {ranks.world} ranks ({what})",
                          f"give a `{name}` that {ranks.world} divides, or another number of ranks")
