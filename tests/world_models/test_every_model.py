"""One contract test over every registered model: a new model fails here until it has a case.

Pixel models are built small and take a real Pong batch through ``loss`` too; the object models and the
extractor need a trained extractor and its data, so their case is their shipped checkpoint started from the
real contexts it ships with (their losses are tested beside them). Each model is then checked the same way:
``start`` gives a batch-first state, ``step`` a reward in {-1, 0, 1} and a termination probability,
``decode`` a frame in [0, 1], ``features`` / ``observation`` a finite vector of ``feature_dim`` within
``feature_bound``, ``rollout`` the shapes it promises, and ``select_state`` mixes two states row by row.
Every model is either a world model or an extractor (``space_time``): an extractor finds objects in a
frame, has no ``step``, and a learned env of it is refused with a message that says what to use instead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from dataset_tools.sequences import SequenceDataset
from learned_envs.env import LearnedVectorEnv
from world_models import MODELS, Extractor, Model, WorldModel, build_model, load_context, load_model
from world_models.base import select_state
from world_models.pixel.asset_spatial_rnn import AssetSpatialRNNConfig
from world_models.pixel.epva import EPVAConfig
from world_models.pixel.frame_transformer import FrameTransformerConfig
from world_models.pixel.rnn_deconv import RNNDeconvConfig
from world_models.pixel.rssm import RSSMConfig
from world_models.pixel.savp import SAVPConfig
from world_models.pixel.svg import SVGConfig
from world_models.space import PONG_CHECKPOINT

ASSETS = Path(__file__).resolve().parents[2] / "learned_envs" / "assets"

SMALL_PIXEL = {
    "rnn_deconv": RNNDeconvConfig(n_past=2, n_future=3, hidden=32, nf=8, action_dim=8),
    "rssm": RSSMConfig(n_past=2, n_future=3, deter=32, stoch=4, classes=4, hidden=32, embed=32, nf=8),
    "svg_lp": SVGConfig(n_past=2, n_future=3, g_dim=32, z_dim=4, rnn_size=32, nf=8, action_dim=8),
    "svg_fp": SVGConfig(n_past=2, n_future=3, g_dim=32, z_dim=4, rnn_size=32, nf=8, action_dim=8, prior="fixed"),
    "savp": SAVPConfig(
        n_past=2, n_future=3, nf=4, nef=4, ndf=4, feat_dim=16, z_dim=2, action_dim=4, n_transformed=2, kernel_size=3
    ),
    "epva": EPVAConfig(
        n_past=2, n_future=3, enc_dim=16, nf=8, rnn_size=32, action_dim=8, noise_dim=4, critic_hidden=16
    ),
    "frame_transformer": FrameTransformerConfig(n_past=2, n_future=3, g_dim=16, nf=8, action_dim=4, kernel_size=7),
    "asset_spatial_rnn": AssetSpatialRNNConfig(n_past=2, n_future=3, hidden=16, nf=8, action_dim=4, sprite_size=6),
}
SHIPPED = {
    "object_dynamics": ASSETS / "LearnedPongObjects-v1",
    "scene_dynamics": ASSETS / "LearnedPongScene-v0",
    "slot_dynamics": ASSETS / "LearnedPong-v2",
    "space_time": PONG_CHECKPOINT,
}


def _pixel_case(name: str, pong_dataset: Path) -> tuple[Any, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    cfg = SMALL_PIXEL[name]
    model = build_model(name, cfg, (3, 64, 64), 6)
    batch = next(
        iter(SequenceDataset(pong_dataset, seq_len=cfg.n_past + cfg.n_future, split="train").loader(4, seed=0))
    )
    loss, logs = model.loss(batch)
    assert loss.ndim == 0 and torch.isfinite(loss), name
    assert {"reward_ce", "term_bce"} <= set(logs), f"{name} logs {sorted(logs)}"
    p = cfg.n_past
    return model, batch.frames[:, :p], batch.actions[:, : p - 1]


def _shipped_case(name: str) -> tuple[Any, torch.Tensor, torch.Tensor]:
    model, _ = load_model(SHIPPED[name], "cpu")
    ctx = load_context(SHIPPED[name])
    frames = (
        torch.from_numpy(ctx["frames"][:4]).permute(0, 1, 4, 2, 3).float() / 255.0
    )  # (B, P, H, W, C) -> (B, P, C, H, W)
    return model, frames, torch.from_numpy(ctx["actions"][:4]).long()


CASES: dict[str, Callable[[str, Path], tuple[Any, torch.Tensor, torch.Tensor]]] = {
    **{name: _pixel_case for name in SMALL_PIXEL},
    **{name: (lambda name, _: _shipped_case(name)) for name in SHIPPED},
}


OURS = sorted(n for n, cls in MODELS.items() if cls.__module__.startswith("world_models."))
"""The library's models (other tests register throwaway ones of their own)."""


@pytest.mark.parametrize("name", OURS)
@torch.no_grad()
def test_every_registered_model_keeps_the_contract(name: str, pong_dataset: Path) -> None:
    assert name in CASES, f"{name} is registered but has no case in {__name__}: add one"
    model, frames, actions = CASES[name](name, pong_dataset)
    model.eval()
    b = frames.shape[0]
    assert model.name == name and frames.shape[1] == model.cfg.n_past
    assert isinstance(model, Model) and isinstance(model, WorldModel) != isinstance(model, Extractor), name
    if isinstance(model, Extractor):  # it finds objects in a frame; a learned env refuses it in one line
        found = model.infer(frames[:, -1])
        assert found.z_pres.shape[0] == b and found.boxes.shape[:2] == found.z_pres.shape, name
        with pytest.raises(ValueError, match="object extractor, it cannot step"):
            LearnedVectorEnv(SHIPPED[name], num_envs=1)
        return
    state = model.start(frames, actions, generator=torch.Generator().manual_seed(0))
    assert isinstance(state, dict) and all(v.shape[0] == b for v in state.values()), name
    first = model.decode(state)
    assert first.shape == (b, *model.frame_shape) and 0 <= first.min() and first.max() <= 1
    moves = torch.arange(b, dtype=torch.int64) % model.n_actions
    state, reward, term = model.step(state, moves, generator=torch.Generator().manual_seed(1))
    assert reward.shape == (b,) and set(reward.tolist()) <= {-1.0, 0.0, 1.0}
    assert term.shape == (b,) and bool(((0 <= term) & (term <= 1)).all())
    frame = model.decode(state)
    assert frame.shape == (b, *model.frame_shape) and 0 <= frame.min() and frame.max() <= 1
    assert model.features(state).shape == (b, model.feature_dim)
    obs = model.observation(state)
    assert obs.dtype == torch.float32 and bool(torch.isfinite(obs).all())
    assert float(obs.abs().max()) <= model.feature_bound
    other = {k: torch.zeros_like(v) for k, v in state.items()}
    rows = torch.arange(b) % 2 == 0
    mixed = select_state(rows, state, other)
    for key, value in state.items():
        assert torch.equal(mixed[key][rows], value[rows]) and not mixed[key][~rows].any(), (name, key)
    out = model.rollout(
        frames, actions, torch.stack([moves, moves, moves], 1), generator=torch.Generator().manual_seed(2)
    )
    assert out["frames"].shape == (b, 3, *model.frame_shape)
    assert out["rewards"].shape == (b, 3) and out["terminated"].shape == (b, 3)
