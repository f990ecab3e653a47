"""The WorldModel contract, config overrides and checkpoints, on rnn_deconv."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from dataset_tools.sequences import SequenceDataset
from world_models import MODELS, CheckpointError, build_model, load_model
from world_models.base import select_state
from world_models.checkpoint import FORMAT, CheckpointConfig, checkpoint_dirs, read_config, save_checkpoint
from world_models.config import ConfigError, apply_overrides, expand_grid, parse_pairs, run_name
from world_models.pixel.rnn_deconv import RNNDeconvConfig

TINY = RNNDeconvConfig(n_past=2, n_future=3, hidden=32, nf=8, action_dim=8)


def _batch(pong_dataset: Path, batch_size: int = 4):
    data = SequenceDataset(pong_dataset, seq_len=TINY.n_past + TINY.n_future, split="train")
    return next(iter(data.loader(batch_size, seed=0)))


def test_registry_and_shapes(pong_dataset: Path) -> None:
    assert "rnn_deconv" in MODELS
    model = build_model("rnn_deconv", TINY, (3, 64, 64), 6)
    batch = _batch(pong_dataset)
    loss, logs = model.loss(batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert {"recon", "reward_ce", "term_bce", "reward_acc"} <= set(logs)
    state = model.start(batch.frames[:, :2], batch.actions[:, :1])
    state, reward, term = model.step(state, batch.actions[:, 1])
    assert model.decode(state).shape == (4, 3, 64, 64)
    assert model.features(state).shape == (4, model.feature_dim)
    assert set(reward.tolist()) <= {-1.0, 0.0, 1.0} and ((0 <= term) & (term <= 1)).all()
    out = model.rollout(batch.frames[:, :2], batch.actions[:, :1], batch.actions[:, 1:4])
    assert out["frames"].shape == (4, 3, 3, 64, 64) and out["rewards"].shape == (4, 3)
    mixed = select_state(
        torch.tensor([True, False, True, False]), state, {k: torch.zeros_like(v) for k, v in state.items()}
    )
    assert torch.equal(mixed["h"][0], state["h"][0]) and not mixed["h"][1].any()


def test_rnn_deconv_learns_a_real_batch(pong_dataset: Path, fit) -> None:
    torch.manual_seed(0)
    model = build_model("rnn_deconv", TINY, (3, 64, 64), 6)
    history = fit(model, _batch(pong_dataset), 40)
    assert history[-1]["recon"] < 0.5 * history[0]["recon"]
    assert all(p.grad is not None for p in model.parameters())


def test_non_square_frames_are_refused() -> None:
    with pytest.raises(ValueError, match="square"):
        build_model("rnn_deconv", TINY, (3, 64, 48), 6)


def test_overrides_and_grid() -> None:
    @dataclasses.dataclass
    class Train:
        lr: float = 1e-3
        steps: int = 10
        device: str = "auto"

    train, model = apply_overrides(
        [Train(), TINY], parse_pairs(["lr=3e-4", "hidden=64", "steps=1e3", "change_weight=0"])
    )
    assert train.lr == 3e-4 and train.steps == 1000 and model.hidden == 64 and model.change_weight == 0.0
    with pytest.raises(ConfigError, match="valid keys: .*hidden.*lr"):
        apply_overrides([Train(), TINY], {"hiden": "3"})
    with pytest.raises(ConfigError, match="cannot read"):
        apply_overrides([Train(), TINY], {"steps": "many"})
    grid = expand_grid(["seed=0,1,2", "beta=1e-4,1e-3", "lr=0.1"])
    assert len(grid) == 6 and grid[0] == {"seed": "0", "beta": "1e-4", "lr": "0.1"}
    assert run_name(grid[-1], ["seed", "beta"]) == "seed=2-beta=1e-3"


def test_checkpoint_round_trip_keep_last_and_errors(tmp_path: Path) -> None:
    model = build_model("rnn_deconv", TINY, (3, 64, 64), 6)
    info = CheckpointConfig("rnn_deconv", dataclasses.asdict(TINY), (3, 64, 64), 6)
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, step, model, info, keep_last=2)
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step_00000003", "step_00000004"]
    loaded, config = load_model(tmp_path)
    assert config.step == 4 and not loaded.training
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    weights = checkpoint_dirs(tmp_path)[-1] / "model.pt"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="model.pt: corrupted"):
        load_model(tmp_path)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_model(tmp_path / "nope")
    (checkpoint_dirs(tmp_path)[0] / "config.json").write_text("{")
    with pytest.raises(CheckpointError, match="config.json: corrupted"):
        load_model(checkpoint_dirs(tmp_path)[0])


@pytest.mark.parametrize("name", ["LearnedPong-v0", "LearnedPong-v2", "LearnedPongObjects-v1", "LearnedPongScene-v0"])
def test_the_typed_checkpoint_config_reads_and_writes_the_files_as_they_are(name: str) -> None:
    """Every shipped config.json (schema 1, written before the type existed) reads into CheckpointConfig and
    writes back to the same JSON; what is not a checkpoint config is refused in one line naming the file."""
    path = Path(__file__).resolve().parents[2] / "learned_envs" / "assets" / name / "config.json"
    raw = json.loads(path.read_text())
    config = read_config(path.parent)
    assert isinstance(config, CheckpointConfig) and config.format == FORMAT == raw["format"]
    assert config.game == "Pong" and config.n_actions == len(config.action_meanings) == 6
    assert config.frame_shape == tuple(raw["frame_shape"]) and isinstance(config.step, int)
    assert config.to_dict() == raw
    with pytest.raises(CheckpointError, match=r"x/config.json: not a learned-envs checkpoint config \(format 9\)"):
        CheckpointConfig.from_dict({**raw, "format": 9}, "x/config.json")
    with pytest.raises(CheckpointError, match="lacks n_actions"):
        CheckpointConfig.from_dict({k: v for k, v in raw.items() if k != "n_actions"})
    with pytest.raises(CheckpointError, match="bad frame_shape"):
        CheckpointConfig.from_dict({**raw, "frame_shape": [3, 64]})


def test_long_jobs_pick_their_threads_from_the_free_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import world_models.base
    from world_models.base import cpus_busy, pick_threads

    before = torch.get_num_threads()
    try:
        assert pick_threads({"OMP_NUM_THREADS": "1"}) == (1, "torch uses 1 CPU thread(s) (OMP_NUM_THREADS=1)")
        monkeypatch.setattr(os, "cpu_count", lambda: 2)
        monkeypatch.setattr(world_models.base, "cpus_busy", lambda: 1.2)  # one core busy elsewhere now
        monkeypatch.setattr(os, "getloadavg", lambda: (0.1, 0.0, 0.0))  # the lagging load average says idle
        threads, line = pick_threads({})
        assert threads == 1 == torch.get_num_threads() and "1.2 busy with other work (now)" in line
        monkeypatch.setattr(world_models.base, "cpus_busy", lambda: 0.1)
        monkeypatch.setattr(os, "getloadavg", lambda: (1.9, 0.0, 0.0))  # work that has just ended
        assert pick_threads({})[0] == 2
        monkeypatch.setattr(world_models.base, "cpus_busy", lambda: None)  # no /proc/stat: the load average
        threads, line = pick_threads({})
        assert threads == 1 and "(load average)" in line
    finally:
        torch.set_num_threads(before)
    # /proc/stat's counters (user nice system idle iowait ...): of 200 ticks over 2 CPUs, 100 not idle
    snapshots = iter([[100, 0, 20, 500, 10, 0, 0, 0], [170, 0, 50, 580, 30, 0, 0, 0]])
    assert cpus_busy(0.0, lambda: next(snapshots)) == pytest.approx(1.0)
    assert cpus_busy(0.0, lambda: [1, 2, 3]) is not None  # a short line is not an error
    assert 0.0 <= (cpus_busy(0.05) or 0.0) <= 2.0  # the machine's own, where it has /proc/stat

    def unreadable() -> list[int]:
        raise OSError("no /proc/stat")

    assert cpus_busy(0.0, unreadable) is None
