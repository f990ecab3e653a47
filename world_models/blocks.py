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


def norm_mlp(n_in: int, hidden: int, out: int) -> nn.Sequential:
    """One hidden layer with LayerNorm and SiLU (DreamerV3's block), then a linear layer to ``out``."""
    return nn.Sequential(nn.Linear(n_in, hidden), nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, out))
