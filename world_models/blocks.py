"""Small network blocks shared by several models."""

from __future__ import annotations

from torch import nn


def mlp(n_in: int, hidden: int, layers: int, out: int | None = None) -> nn.Sequential:
    """``layers`` SiLU layers of width ``hidden``, then a linear layer to ``out`` if given."""
    modules: list[nn.Module] = []
    width = n_in
    for _ in range(layers):
        modules += [nn.Linear(width, hidden), nn.SiLU()]
        width = hidden
    if out is not None:
        modules.append(nn.Linear(width, out))
    return nn.Sequential(*modules)


def norm_mlp(n_in: int, hidden: int, out: int, depth: int = 1) -> nn.Sequential:
    """``depth`` hidden layers with LayerNorm and SiLU (DreamerV3's block), then a linear layer to ``out``."""
    layers: list[nn.Module] = []
    for k in range(depth):
        layers += [nn.Linear(n_in if k == 0 else hidden, hidden), nn.LayerNorm(hidden), nn.SiLU()]
    return nn.Sequential(*layers, nn.Linear(hidden, out))
