"""SVG-LP / SVG-FP: shapes, imagination, reproducible sampling, learning a real Pong batch."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from dataset_tools.sequences import SequenceBatch, SequenceDataset
from world_models.base import MODELS, WorldModel, build_model, select_state
from world_models.pixel.svg import SVGConfig, SVGFPConfig

TINY = SVGConfig(n_past=2, n_future=3, g_dim=32, z_dim=4, rnn_size=32, nf=8, action_dim=8)
N_ACTIONS = 6


def _pong_batch(pong_dataset: Path, cfg: SVGConfig = TINY, batch_size: int = 4) -> SequenceBatch:
    data = SequenceDataset(pong_dataset, seq_len=cfg.n_past + cfg.n_future, split="train")
    return next(iter(data.loader(batch_size, seed=0)))


def _random_batch(size: int, batch_size: int = 3, seq_len: int = 5) -> SequenceBatch:
    g = torch.Generator().manual_seed(0)
    t = seq_len - 1
    return SequenceBatch(
        frames=torch.rand(batch_size, seq_len, 3, size, size, generator=g),
        actions=torch.randint(0, N_ACTIONS, (batch_size, t), generator=g),
        rewards=torch.randint(-1, 2, (batch_size, t), generator=g).float(),
        terminated=torch.zeros(batch_size, t),
        ram=torch.zeros(batch_size, seq_len, 128, dtype=torch.uint8),
    )


def _check_model(model: WorldModel, batch: SequenceBatch, n_past: int) -> None:
    b, _, c, h, w = batch.frames.shape
    loss, logs = model.loss(batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert {"recon", "kl", "reward_ce", "term_bce", "reward_acc"} <= set(logs)
    assert logs["kl"] >= 0
    state = model.start(batch.frames[:, :n_past], batch.actions[:, : n_past - 1])
    assert all(v.shape[0] == b for v in state.values())
    state, reward, term = model.step(state, batch.actions[:, n_past - 1])
    frame = model.decode(state)
    assert frame.shape == (b, c, h, w) and 0 <= frame.min() and frame.max() <= 1
    assert model.features(state).shape == (b, model.feature_dim)
    assert reward.shape == term.shape == (b,)
    assert set(reward.tolist()) <= {-1.0, 0.0, 1.0} and ((0 <= term) & (term <= 1)).all()
    k = batch.actions.shape[1] - n_past + 1
    out = model.rollout(batch.frames[:, :n_past], batch.actions[:, : n_past - 1], batch.actions[:, n_past - 1 :])
    assert out["frames"].shape == (b, k, c, h, w)
    assert out["rewards"].shape == out["terminated"].shape == (b, k)
    # select_state: every tensor of the state is batch-first, LSTM states included
    mask = torch.arange(b) % 2 == 0
    zeros = {key: torch.zeros_like(v) for key, v in state.items()}
    mixed = select_state(mask, state, zeros)
    for key, value in state.items():
        assert torch.equal(mixed[key][0], value[0]) and not mixed[key][1].any(), key
    assert state["pred_h"].shape == (b, TINY.predictor_rnn_layers, TINY.rnn_size)


def test_registry() -> None:
    assert {"svg_lp", "svg_fp"} <= set(MODELS)
    assert MODELS["svg_lp"].stochastic and MODELS["svg_fp"].Config is SVGFPConfig


@pytest.mark.parametrize("action_mode", ["embed", "raw"])
def test_shapes_on_real_pong_64(pong_dataset: Path, action_mode: str) -> None:
    cfg = dataclasses.replace(TINY, action_mode=action_mode)
    model = build_model("svg_lp", cfg, (3, 64, 64), N_ACTIONS)
    _check_model(model, _pong_batch(pong_dataset), cfg.n_past)


@pytest.mark.parametrize(
    ("name", "changes"),
    [
        ("svg_lp", {"action_mode": "raw"}),
        ("svg_lp", {"last_frame_skip": True, "n_past": 3}),
        ("svg_fp", {"prior": "fixed"}),
        ("svg_lp", {"n_past": 1}),
    ],
)
def test_shapes_32(name: str, changes: dict[str, object]) -> None:
    cfg = dataclasses.replace(TINY, **changes)
    model = build_model(name, cfg, (3, 32, 32), N_ACTIONS)
    _check_model(model, _random_batch(32), cfg.n_past)


def test_128_frames_and_bad_shapes() -> None:
    model = build_model("svg_lp", TINY, (1, 128, 128), N_ACTIONS)
    batch = _random_batch(128, batch_size=2, seq_len=3)
    batch.frames = batch.frames[:, :, :1]  # (B, T, 3, H, W) -> (B, T, 1, H, W)
    out = model.rollout(batch.frames[:, :2], batch.actions[:, :1], batch.actions[:, 1:])
    assert out["frames"].shape == (2, 1, 1, 128, 128)
    with pytest.raises(ValueError, match="square"):
        build_model("svg_lp", TINY, (3, 64, 48), N_ACTIONS)
    with pytest.raises(ValueError, match="power-of-two"):
        build_model("svg_lp", TINY, (3, 48, 48), N_ACTIONS)
    with pytest.raises(ValueError, match="fixed prior"):
        build_model("svg_fp", TINY, (3, 64, 64), N_ACTIONS)


def test_parameter_counts_at_defaults() -> None:
    counts = build_model("svg_lp", {}, (3, 64, 64), N_ACTIONS).parameter_counts()
    assert {"frame_predictor", "posterior", "prior", "encoder", "decoder", "action_embed"} <= set(counts)
    assert counts["total"] < 6_000_000
    fp_counts = build_model("svg_fp", {}, (3, 64, 64), N_ACTIONS).parameter_counts()
    assert "prior" not in fp_counts and fp_counts["total"] == counts["total"] - counts["prior"]
    raw = build_model("svg_lp", {"action_mode": "raw"}, (3, 64, 64), N_ACTIONS).parameter_counts()
    assert raw["action_embed"] == 0


@pytest.mark.parametrize("name", ["svg_lp", "svg_fp"])
def test_seeded_rollouts_are_reproducible(name: str) -> None:
    torch.manual_seed(0)
    cfg = dataclasses.replace(TINY, prior="fixed" if name == "svg_fp" else "learned")
    model = build_model(name, cfg, (3, 32, 32), N_ACTIONS).eval()
    batch = _random_batch(32)

    def frames(seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return model.rollout(batch.frames[:, :2], batch.actions[:, :1], batch.actions[:, 1:], generator=gen)["frames"]

    first = frames(1)
    assert torch.equal(first, frames(1))
    assert not torch.allclose(first, frames(2))


def test_gradients_reach_every_module(pong_dataset: Path) -> None:
    torch.manual_seed(0)
    model = build_model("svg_lp", TINY, (3, 64, 64), N_ACTIONS)
    loss, _ = model.loss(_pong_batch(pong_dataset))
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_svg_learns_a_real_pong_batch(pong_dataset: Path, fit) -> None:
    torch.manual_seed(0)
    model = build_model("svg_lp", TINY, (3, 64, 64), N_ACTIONS)
    recon = [logs["recon"] for logs in fit(model, _pong_batch(pong_dataset), 30)]
    assert recon[-1] <= 0.5 * recon[0], recon


@pytest.mark.parametrize("last_frame_skip", [True, False])
def test_composite_starts_as_copy_last(pong_dataset, last_frame_skip: bool) -> None:
    """With compositing, an untrained model's rollout stays within a few percent of copy-last."""
    torch.manual_seed(0)
    batch = next(iter(SequenceDataset(pong_dataset, seq_len=6, split="train").loader(4, seed=1)))
    cfg = SVGConfig(nf=8, g_dim=16, z_dim=4, rnn_size=16, composite=True, last_frame_skip=last_frame_skip)
    model = build_model("svg_lp", cfg, (3, 64, 64), 6)
    loss, _ = model.loss(batch)
    assert torch.isfinite(loss)
    out = model.rollout(batch.frames[:, :2], batch.actions[:, :1], batch.actions[:, 1:5])
    last = batch.frames[:, 1:2].expand_as(out["frames"])
    assert (out["frames"] - last).abs().mean() < 0.02
    assert out["frames"].min() >= 0 and out["frames"].max() <= 1


def test_rollout_training_feeds_back_its_own_frames(pong_dataset) -> None:
    torch.manual_seed(0)
    batch = next(iter(SequenceDataset(pong_dataset, seq_len=6, split="train").loader(2, seed=1)))
    cfg = SVGConfig(nf=8, g_dim=16, z_dim=4, rnn_size=16, composite=True, last_frame_skip=True, rollout_training=True)
    model = build_model("svg_lp", cfg, (3, 64, 64), 6)
    loss, logs = model.loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and {"recon", "kl", "reward_acc"} <= set(logs)
    assert all(p.grad is not None for p in model.parameters())
    # with teacher forcing the same weights see true frames only: the two losses differ
    model.cfg.rollout_training = False
    assert not torch.isclose(model.loss(batch)[0], loss)


def test_encoder_frames_stacks_each_frame_with_its_predecessor(pong_dataset: Path) -> None:
    """encoder_frames=2: the encoder reads [frame, previous frame] in imagination and in rollout training."""
    torch.manual_seed(0)
    cfg = dataclasses.replace(TINY, encoder_frames=2, composite=True, last_frame_skip=True)
    model = build_model("svg_lp", cfg, (3, 64, 64), N_ACTIONS)
    assert model.encoder.blocks[0][0].in_channels == 6
    batch = _pong_batch(pong_dataset, cfg)
    _check_model(model, batch, cfg.n_past)
    seen_in, drawn = [], []
    model.encoder.register_forward_hook(lambda m, args, out: seen_in.append(args[0].detach()))
    model.decoder.register_forward_hook(lambda m, args, out: drawn.append(out.detach()))
    ctx = batch.frames[:, :2]
    out = model.rollout(ctx, batch.actions[:, :1], batch.actions[:, 1:4])
    # start: the context, the first frame paired with itself; then each step: [latest, the one before]
    assert torch.equal(seen_in[0][0::2], torch.cat([ctx[:, 0], ctx[:, 0]], 1))
    assert torch.equal(seen_in[0][1::2], torch.cat([ctx[:, 1], ctx[:, 0]], 1))
    assert torch.equal(seen_in[1], torch.cat([ctx[:, 1], ctx[:, 0]], 1))
    assert torch.equal(seen_in[2], torch.cat([out["frames"][:, 0], ctx[:, 1]], 1))
    assert torch.equal(seen_in[3], torch.cat([out["frames"][:, 1], out["frames"][:, 0]], 1))
    # rollout training: after the context the encoder sees the model's own frames, paired the same way
    seen_in.clear(), drawn.clear()
    model.cfg.rollout_training = True
    loss, _ = model.loss(batch)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    p = cfg.n_past
    assert torch.equal(seen_in[1], torch.cat([drawn[p - 1], batch.frames[:, p - 1]], 1))
    assert torch.equal(seen_in[2], torch.cat([drawn[p], drawn[p - 1]], 1))


def test_a_one_frame_model_grown_to_two_computes_the_same(pong_dataset: Path) -> None:
    """init_from's zero-padding of the new inputs: the grown model starts as the source model."""
    from world_models.training.weights import grow_inputs

    torch.manual_seed(0)
    one = build_model("svg_lp", dataclasses.replace(TINY, composite=True), (3, 64, 64), N_ACTIONS)
    two = build_model("svg_lp", dataclasses.replace(TINY, composite=True, encoder_frames=2), (3, 64, 64), N_ACTIONS)
    weights, grown = grow_inputs(one.state_dict(), two.state_dict())
    assert grown == ["encoder.blocks.0.0.weight"]
    two.load_state_dict(weights)
    batch = _pong_batch(pong_dataset)
    outs = []
    for model in (one, two):
        gen = torch.Generator().manual_seed(3)
        with torch.no_grad():
            outs.append(model.rollout(batch.frames[:, :2], batch.actions[:, :1], batch.actions[:, 1:4], generator=gen))
    assert torch.allclose(outs[0]["frames"], outs[1]["frames"], atol=1e-6)
    # and it is not the same model: once the older frame's weights move, the frames differ
    with torch.no_grad():
        two.encoder.blocks[0][0].weight[:, 3:] += 0.1
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        moved = two.rollout(batch.frames[:, :2], batch.actions[:, :1], batch.actions[:, 1:4], generator=gen)
    assert not torch.allclose(outs[0]["frames"], moved["frames"], atol=1e-4)
