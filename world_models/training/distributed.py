"""DistributedDataParallel under ``torchrun`` (``WORLD_SIZE`` > 1), and the device a rank trains on."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from dataset_tools.sequences import SequenceBatch
from world_models.base import Model, pick_device
from world_models.config import ConfigError


class LossModule(nn.Module):
    """Routes ``model.loss(batch)`` through ``forward``: DDP only syncs gradients of ``forward`` calls."""

    def __init__(self, model: Model) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: SequenceBatch) -> tuple[torch.Tensor, dict[str, float]]:
        return self.model.loss(batch)


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


@contextlib.contextmanager
def distributed() -> Iterator[Dist]:
    """Joins the process group that torchrun describes (``WORLD_SIZE`` > 1) while open; else a no-op."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        yield Dist()
        return
    info = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if dist.is_initialized():
        yield info
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
    try:
        yield info
    finally:
        dist.destroy_process_group()


def train_device(name: str, dd: Dist) -> torch.device:
    device = pick_device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name}, but CUDA is not available here (use device=cpu or auto)")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", dd.local_rank)
    return device


def adversary_step(
    loss: torch.Tensor, optimizer: torch.optim.Optimizer, params: list[nn.Parameter], max_norm: float, dd: Dist
) -> float:
    """One step of the adversary's optimizer; its gradients are averaged over DDP ranks by hand (its
    loss runs outside the DDP forward). Returns the loss averaged over ranks."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    value = loss.detach().float().reshape(1)
    if dd.world > 1:
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad)
            p.grad /= dd.world
        dist.all_reduce(value)
        value /= dd.world
    if math.isfinite(value.item()):
        nn.utils.clip_grad_norm_(params, max_norm)
        optimizer.step()
    return value.item()
