"""``rssm``, the latent-recurrent pixel model, and ``learned-envs closed-loop``, which grades Pong dreams on
their own output (valid scenes over long dreams, serves' directions, the reward head's recall and precision)."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from dataset_tools.dataset import DatasetDir
from dataset_tools.sequences import SequenceDataset
from world_models import build_model
from world_models.evaluation.closed_loop import (
    ClosedLoopConfig,
    _direction,
    _recall_precision_near,
    closed_loop,
    enemy_gap,
)
from world_models.pixel.rssm import RSSMConfig

SMALL = RSSMConfig(n_past=2, n_future=4, deter=32, stoch=4, classes=4, hidden=32, embed=32, nf=8)


def _batch(pong_dataset: Path, cfg: RSSMConfig = SMALL, size: int = 4):
    seqs = SequenceDataset(pong_dataset, seq_len=cfg.n_past + cfg.n_future, split="train")
    return next(iter(seqs.loader(size, seed=0)))


def test_rssm_learns_a_real_batch(pong_dataset: Path, fit) -> None:
    torch.manual_seed(0)
    model = build_model("rssm", SMALL, (3, 64, 64), 6)
    history = fit(model, _batch(pong_dataset), 40)
    first, logs = history[0]["recon"], history[-1]
    assert {"recon", "kl", "prior_entropy", "reward_ce", "term_bce"} <= set(logs)
    assert logs["recon"] < 0.5 * first


def test_a_latent_step_decodes_nothing_and_draws_reproducibly(pong_dataset: Path) -> None:
    torch.manual_seed(0)
    model = build_model("rssm", SMALL, (3, 64, 64), 6).eval()
    batch = _batch(pong_dataset)
    frames, actions = batch.frames[:, :2], batch.actions[:, :1]
    calls = []
    model.decoder.register_forward_hook(lambda *_: calls.append(1))

    def run(seed: int, steps: int = 5) -> torch.Tensor:
        with torch.no_grad():
            state = model.start(frames, actions, generator=torch.Generator().manual_seed(0))
            gen = torch.Generator().manual_seed(seed)
            for _ in range(steps):
                state = model.step(state, torch.zeros(4, dtype=torch.int64), generator=gen).state
        return model.features(state)

    a, b, c = run(0), run(0), run(1)
    assert not calls  # start and step never draw a frame
    assert torch.equal(a, b) and not torch.equal(a, c)  # the prior draws; the same seed draws the same
    model.decode({"h": a[:, :32], "z": a[:, 32:]})
    assert calls
    z = a[:, 32:].view(4, 4, 4)
    assert torch.equal(z.sum(-1), torch.ones(4, 4)) and set(z.unique().tolist()) == {0.0, 1.0}  # one-hot
    cold = dataclasses.replace(SMALL, temperature=0.0)
    model.cfg = cold
    assert torch.equal(run(0), run(1))  # temperature 0: the prior's most likely classes, whatever the seed


@pytest.mark.parametrize("free_nats", [0.0, 1e6])
def test_free_bits_stop_the_prior_being_pulled_below_them(pong_dataset: Path, free_nats: float) -> None:
    torch.manual_seed(0)
    model = build_model("rssm", dataclasses.replace(SMALL, free_nats=free_nats), (3, 64, 64), 6)
    loss, _ = model.loss(_batch(pong_dataset))
    loss.backward()
    prior_grad = sum(float(p.grad.abs().sum()) for p in model.prior.parameters() if p.grad is not None)
    assert (prior_grad > 0) == (free_nats == 0.0)  # the prior is trained by the KL alone


def test_a_serve_direction_is_the_first_move_of_a_found_ball() -> None:
    track = np.array([[0, 0, 0], [1, 80, 100], [0, 0, 0], [1, 84, 97], [1, 88, 97.2]], dtype=np.float32)
    assert _direction(track) == (1, 0)  # steps 3 -> 4: right, and under half a pixel in y
    assert _direction(np.array([[1, 80, 100], [1, 76, 104]], dtype=np.float32)) == (-1, 1)
    assert _direction(np.array([[1, 80, 100], [0, 0, 0]], dtype=np.float32)) is None


# the train keys of the tiny rssm runs (sizes, windows, the held-out episode)
TINY_KEYS = ["batch_size=4", "n_past=2", "n_future=3", "deter=32", "stoch=4", "classes=4", "hidden=32", "embed=32"]
TINY_KEYS += ["nf=8", "image_every=0", "val_fraction=0.34"]


@pytest.fixture(scope="module")
def tiny_rssm(pong_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny rssm trained for 3 steps on the Pong fixture, its last episode held out (machinery, not quality)."""
    from world_models.training import train

    return train("rssm", pong_dataset, tmp_path_factory.mktemp("rssm"), ["steps=3", *TINY_KEYS], progress=False)


@pytest.fixture(scope="module")
def tiny_object_rssm(tiny_rssm: Path, pong_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_rssm`` grown with ``object_state``; two large updates make the objects' new inputs count."""
    from world_models.training import train

    overrides = ["object_state=true", "steps=2", "lr=0.3", f"init_from={tiny_rssm}", *TINY_KEYS]
    return train("rssm", pong_dataset, tmp_path_factory.mktemp("rssm_objects"), overrides, progress=False)


def test_init_from_swaps_the_ball_head_and_keeps_the_rest(
    tiny_object_rssm: Path, pong_dataset: Path, tmp_path: Path, caplog
):
    """``ball_moves=objects`` from a model whose ball head reads ``h``: the new head starts from scratch (and is
    prefitted), the old one is left out, every other weight is copied."""
    from world_models import load_model
    from world_models.training import train

    overrides = ["object_state=true", "ball_moves=objects", "steps=1", "lr=0", f"init_from={tiny_object_rssm}"]
    with caplog.at_level(logging.INFO, logger="world_models.training.trainer"):
        swapped = train(
            "rssm", pong_dataset, tmp_path / "swapped", [*overrides, "ball_prefit=5", *TINY_KEYS], progress=False
        )
    assert "prefit: prefit_ball_move_ce" in caplog.text
    (source, _), (model, _) = load_model(tiny_object_rssm), load_model(swapped)
    old, new = source.state_dict(), model.state_dict()
    assert any(k.startswith("objects.ball_head.") for k in old) and not any("ball_head" in k for k in new)
    assert any(k.startswith("objects.ball_net.") for k in new)
    shared = [k for k in new if k in old]
    assert len(shared) == len(new) - sum(k.startswith("objects.ball_net.") for k in new)
    assert all(torch.equal(old[k], new[k]) for k in shared)


@pytest.mark.parametrize(("encoder_frames", "object_state"), [(1, False), (3, False), (1, True)])
def test_the_real_twin_filters_the_whole_game(
    tiny_rssm: Path, pong_dataset: Path, tmp_path: Path, encoder_frames: int, object_state: bool, request
) -> None:
    """The twin steps the posterior one real frame at a time (``observe_step``) and lands where filtering the
    whole game at once does; with ``encoder_frames`` > 1 each frame is read with its predecessors both ways, with
    ``object_state`` the detector's objects of each frame feed the GRU both ways."""
    from dataset_tools.preprocess import to_tensor_layout
    from learned_envs.twin import make_real_twin
    from world_models import load_model
    from world_models.training import train

    checkpoint = request.getfixturevalue("tiny_object_rssm") if object_state else tiny_rssm
    if encoder_frames > 1:
        # from the one-frame model, the older frames' weights start at zero; two large updates make them count
        overrides = [f"encoder_frames={encoder_frames}", "steps=2", "lr=0.3", f"init_from={tiny_rssm}", *TINY_KEYS]
        checkpoint = train("rssm", pong_dataset, tmp_path / "stacked", overrides, progress=False)
    twin = make_real_twin(checkpoint, obs_type="latent")
    torch.manual_seed(3)
    obs, _ = twin.reset(seed=0)
    frames, actions = [twin.last_raw_frame] * 2, [0]  # the context repeats the first frame
    for a in (2, 3, 3, 0, 1):
        obs, *_ = twin.step(a)
        frames.append(twin.last_raw_frame)
        actions.append(a)
    twin.close()
    model, _ = load_model(checkpoint, "cpu")
    assert model.encoder.conv[0].weight.shape[1] == 3 * encoder_frames
    assert encoder_frames == 1 or model.encoder.conv[0].weight[:, 3:].abs().sum() > 0
    assert not object_state or model.obj_in.weight.abs().sum() > 0
    seen = torch.from_numpy(to_tensor_layout(twin.preprocess(np.stack(frames))))[None]  # (1, T, C, H, W)
    torch.manual_seed(3)  # the same posterior draws, in the same order
    with torch.no_grad():
        hs, zs, _, _, windows = model._filter(seen, torch.tensor([actions]))
        state = {"h": hs[-1], "z": zs[-1]} | ({} if windows is None else {"obj": windows[:, -1]})
    assert torch.allclose(torch.from_numpy(obs), model.observation(state)[0], atol=1e-5)


def test_enemy_gap_reads_the_steps_where_both_are_found() -> None:
    ball = np.zeros((1, 5, 3))
    enemy = np.zeros((1, 5, 3))
    ball[0, :, 0], ball[0, :, 2] = [1, 1, 1, 0, 1], [100, 100, 100, 100, 100]
    enemy[0, :, 0], enemy[0, :, 2] = [1, 1, 1, 1, 0], [96, 70, 104, 0, 0]
    gap = enemy_gap(ball, enemy)
    assert gap["n"] == 3 and gap["median"] == 4.0 and gap["far"] == 1 / 3
    assert enemy_gap(ball, np.zeros((1, 5, 3)))["n"] == 0


def test_rewards_within_one_step_count_a_call_a_step_off_in_its_window_and_sign() -> None:
    true = np.array([[0, -1, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]])
    pred = np.array([[0, 0, -1, 0, 0, 0], [1, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, -1]])
    # row 0: the -1 called a step late (counts), the +1 missed; row 1: a call with no point; row 2: a +1 called
    # two steps late (does not count) and a -1 with no point
    got = _recall_precision_near(true, pred)
    assert got == {"points": 3, "called": 4, "recall": 1 / 3, "precision": 1 / 4}
    wrong_sign = _recall_precision_near(true, -pred)
    assert wrong_sign["recall"] == 0.0 and wrong_sign["precision"] == 0.0
    assert _recall_precision_near(true, pred, slack=2)["recall"] == 2 / 3
    assert _recall_precision_near(true, true)["precision"] == 1.0


@pytest.mark.parametrize("fixture", ["tiny_rssm", "tiny_object_rssm"])
def test_closed_loop_grades_a_trained_rssm(fixture: str, pong_dataset: Path, tmp_path: Path, request) -> None:
    checkpoint = request.getfixturevalue(fixture)
    width = 32 + 4 * 4 + (24 if fixture == "tiny_object_rssm" else 0)  # [h, z] (and the objects' features)
    seen = []

    class Policy:  # a dream agent that always moves up, and records what it was shown
        def predict(self, obs: np.ndarray, deterministic: bool = True) -> tuple[np.ndarray, None]:
            seen.append(obs.shape)
            return np.full(len(obs), 2), None

    cfg = ClosedLoopConfig(str(checkpoint), str(pong_dataset), envs=3, steps=20, every=10, samples=2, horizon=5)
    with pytest.raises(ValueError, match="not an imagination setting"):  # weights depend on it
        closed_loop(dataclasses.replace(cfg, settings=["deter=8"]), tmp_path / "bad")
    cfg = dataclasses.replace(cfg, settings=["reward_sample=true"])
    result = closed_loop(cfg, tmp_path / "cl", policy=Policy())
    assert seen == [(3, width)] * 20  # every dream step asked the agent, with the latent observation
    assert [r["step"] for r in result["agent_dreams"]["per_step"]] == [10, 20]
    assert [r["step"] for r in result["dreams"]["per_step"]] == [10, 20]
    assert all(r["valid"] == 1.0 for r in result["real"]["per_step"])  # the real game's frames are valid scenes
    assert all(0 <= r["ball"] <= 1 for r in result["real"]["per_step"] + result["dreams"]["per_step"])
    assert 0.0 <= result["min_valid"] <= 1.0
    ds = DatasetDir(pong_dataset)
    held = ds.split(0.34)[1]
    rewards = [np.asarray(ds.load(i).rewards) for i in held]
    covered = sum(len(r) - (len(r) - 1) % 5 - 1 for r in rewards)  # windows of 5 from the first transition
    counted = sum(int(np.count_nonzero(r[: len(r) - (len(r) - 1) % 5 - 1])) for r in rewards)
    head = result["reward_head"]
    assert head["transitions"] == covered and head["points"] == counted
    by_step = head["by_step"]
    assert [r["steps"] for r in by_step] == [1, 2, 3, 4, 5]
    assert sum(r["points"] for r in by_step) == counted and sum(r["called"] for r in by_step) == head["called"]
    # the head on the held-out episodes' own filtered states: every transition of them, each once
    assert head["filtered"]["points"] == sum(int(np.count_nonzero(r)) for r in rewards)
    assert "own states" in (tmp_path / "cl" / "closed_loop.md").read_text()
    assert [r["steps"] for r in head["tracking"]["by_step"]] == [1, 2, 3, 4, 5]
    real_gap, dream_gap = result["real"]["enemy_gap"], result["dreams"]["enemy_gap"]
    assert real_gap["n"] > 0 and 0 <= real_gap["median"] <= real_gap["p90"] <= real_gap["p99"]
    assert 0 <= real_gap["far"] <= 1 and set(dream_gap) == set(real_gap)  # a tiny model's dream may show none
    assert "The enemy's paddle from the ball" in (tmp_path / "cl" / "closed_loop.md").read_text()
    near = head["within_one_step"]
    assert near["points"] == counted and near["called"] == head["called"] and near["recall"] >= head["recall"]
    assert "Within one step" in (tmp_path / "cl" / "closed_loop.md").read_text()
    hits = sum(round(r["recall"] * r["points"]) for r in by_step)
    assert head["tracking"]["missed"] == counted - hits  # every point not called with its sign
    assert "Where those dreams leave the game" in (tmp_path / "cl" / "closed_loop.md").read_text()
    assert result["serves"]["n"] >= 1 and set(result["serves"]["serves"][0]) >= {"real", "directions", "found"}
    saved = json.loads((tmp_path / "cl" / "closed_loop.json").read_text())
    assert json.dumps(saved["reward_head"], sort_keys=True) == json.dumps(head, sort_keys=True)  # NaN where none called
    assert "valid frames (dream)" in (tmp_path / "cl" / "closed_loop.md").read_text()
    assert "Imagination settings: reward_sample=true." in (tmp_path / "cl" / "closed_loop.md").read_text()
    for returns in (
        result["dreams"]["returns"],
        result["real"]["returns"],
        saved["agent_dreams"]["returns"],
        result["dreams"]["enemy_returns"],
        result["real"]["enemy_returns"],
    ):
        assert len(returns["bins"]) == 6 and sum(b["n"] for b in returns["bins"]) == returns["n"]
    assert "Balls that come at the player's paddle" in (tmp_path / "cl" / "closed_loop.md").read_text()
    assert "| real, the enemy's paddle |" in (tmp_path / "cl" / "closed_loop.md").read_text()
    import imageio.v3 as iio

    assert iio.imread(tmp_path / "cl" / "closed_loop.png").shape == (3 * 64 * 2, 2 * 64 * 2, 3)


def test_paddle_returns_counts_each_ball_by_its_distance_from_the_paddle() -> None:
    from world_models.evaluation.closed_loop import paddle_returns

    steps = 12
    ball, player = np.zeros((4, steps, 3), np.float32), np.zeros((4, steps, 3), np.float32)
    player[:] = [1.0, 142.0, 100.0]
    xs = 116.0 + 4 * np.arange(steps)  # 116, 120, ..., 160: at the paddle's column at step 6
    for run, y in enumerate((102.0, 50.0, 110.0, 100.0)):
        ball[run, :, 0], ball[run, :, 1], ball[run, :, 2] = 1.0, xs, y
    ball[0, 7:, 1] = 140.0 - 4 * np.arange(steps - 7)  # 2 px off: turned back after the column
    ball[2, 7:] = 0.0  # 10 px off: lost at the column
    ball[3, :, 1] = xs[::-1]  # moving left: it never comes at the paddle
    out = paddle_returns(ball, player)
    got = {(b["from"], b["to"]): (b["n"], b["returned"]) for b in out["bins"]}
    assert got[(0, 4)] == (1, 1.0) and got[(8, 12)] == (1, 0.0) and got[(24, None)] == (1, 0.0)  # 50 px off: past
    assert out["n"] == 3 and out["returned"] == pytest.approx(1 / 3)
    assert got[(4, 8)] == (0, None)
    # the enemy's paddle, the field read mirrored: the same balls flying left at a paddle on the left
    from world_models.evaluation.closed_loop import _mirrored

    enemy = player.copy()
    enemy[..., 1] = 160.0 - player[..., 1]
    flown = ball.copy()
    flown[..., 1] = np.where(ball[..., 0] > 0, 160.0 - ball[..., 1], 0.0)
    assert paddle_returns(_mirrored(flown), _mirrored(enemy)) == out
    assert paddle_returns(flown, enemy) != out  # read unmirrored, not the same balls


def test_tracking_measures_how_far_the_dream_is_from_the_real_frames() -> None:
    from world_models.evaluation.closed_loop import _tracking

    def found(x: list[float], seen: list[float]) -> np.ndarray:
        return np.stack([np.asarray(seen), np.asarray(x), np.full(len(x), 50.0)], 1).astype(np.float32)

    real = {"ball": found([10, 20, 30, 40], [1, 1, 0, 1]), "player": found([140] * 4, [1] * 4)}
    dream = {"ball": found([13, 20, 37, 40], [1, 1, 1, 0]), "player": found([140, 140, 141, 144], [1] * 4)}
    ahead = np.array([1, 1, 2, 2])
    true, pred = np.array([0.0, 0.0, -1.0, 1.0]), np.array([0.0, 0.0, 0.0, 1.0])
    out = _tracking(dream, real, ahead, true, pred, horizon=2)
    first, second = out["by_step"]
    assert first == {"steps": 1, "ball_px": 1.5, "player_px": 0.0, "ball_agree": 1.0}  # median of 3 and 0
    assert second["ball_px"] is None and second["player_px"] == 2.5 and second["ball_agree"] == 0.0
    assert out["missed"] == 1 and out["missed_in_play"] == 1.0  # the missed point's dream frame has a ball


@pytest.mark.parametrize("fixture", ["tiny_rssm", "tiny_object_rssm"])
def test_its_learned_env_steps_the_latent_and_decodes_only_to_render(fixture: str, request) -> None:
    from learned_envs.env import LearnedVectorEnv

    venv = LearnedVectorEnv(request.getfixturevalue(fixture), 3, obs_type="latent", render_mode="rgb_array")
    width = 32 + 4 * 4 + (24 if fixture == "tiny_object_rssm" else 0)
    calls = []
    venv.model.decoder.fc.register_forward_hook(lambda *_: calls.append(1))  # object_state skips its forward
    obs, _ = venv.reset(seed=0)
    for _ in range(5):
        obs, reward, *_ = venv.step(np.array([0, 2, 3]))
    assert venv.obs_type == "latent" and obs.shape == (3, width) and reward.shape == (3,)
    assert not calls
    assert venv.render() is not None and calls


@pytest.mark.parametrize(("fixture", "default"), [("tiny_rssm", "latent"), ("tiny_object_rssm", "objects")])
def test_an_object_state_rssm_gives_its_objects_unless_told(fixture: str, default: str, request) -> None:
    from learned_envs.env import LearnedVectorEnv
    from learned_envs.twin import make_real_twin

    checkpoint = request.getfixturevalue(fixture)
    venv = LearnedVectorEnv(checkpoint, 2)
    assert venv.obs_type == default and venv.single_observation_space.shape == (24 if default == "objects" else 48,)
    twin = make_real_twin(checkpoint)
    assert twin.obs_type == default  # the real twin's agents read what the dream's do
    twin.close()


@pytest.mark.parametrize(("fixture", "default"), [("tiny_rssm", "latent"), ("tiny_object_rssm", "objects")])
def test_dream_agents_read_an_object_state_rssms_objects_unless_told(fixture: str, default: str, request) -> None:
    from agents.dream import DreamConfig, vector_observation

    assert DreamConfig().obs_type is None  # resolved from the checkpoint when the agent trains
    assert vector_observation(request.getfixturevalue(fixture)) == default


def test_drawn_rewards_average_what_the_reward_head_expects(pong_dataset: Path) -> None:
    torch.manual_seed(0)
    model = build_model("rssm", dataclasses.replace(SMALL, reward_sample=True), (3, 64, 64), 6).eval()
    with torch.no_grad():
        model.reward_head[-1].weight.zero_()  # p = softmax(0, 1, -1) = (0.24, 0.67, 0.09) in every state
        model.reward_head[-1].bias.copy_(torch.tensor([0.0, 1.0, -1.0]))
        batch = _batch(pong_dataset, size=1)
        state = model.start(batch.frames[:, :2].repeat(4000, 1, 1, 1, 1), batch.actions[:, :1].repeat(4000, 1))
        gen = torch.Generator().manual_seed(0)
        result = model.step(state, torch.zeros(4000, dtype=torch.int64), generator=gen)
        p = model.reward_head(torch.cat([result.state["h"], result.state["z"]], -1)).softmax(-1)
    drawn = result.reward
    assert set(drawn.unique().tolist()) == {-1.0, 0.0, 1.0}
    for sign, column in ((-1.0, 0), (0.0, 1), (1.0, 2)):
        assert float((drawn == sign).float().mean()) == pytest.approx(float(p[:, column].mean()), abs=0.03)
    model.cfg = SMALL  # the most likely sign: 0
    with torch.no_grad():
        assert not model.step(state, torch.zeros(4000, dtype=torch.int64)).reward.any()


def test_overshooting_trains_the_prior_open_loop(pong_dataset: Path, fit) -> None:
    """``overshoot`` adds the prior rolled out alone from the context: trained with it, the open-loop prior
    sits closer to the posterior several steps ahead than trained without it (same seed, same batch)."""
    batch = _batch(pong_dataset)
    cfg = dataclasses.replace(SMALL, n_future=6, free_nats=0.0)
    open_kl = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        model = build_model("rssm", dataclasses.replace(cfg, overshoot=weight), (3, 64, 64), 6)
        logs = fit(model, batch, 150)[-1]
        assert ("open_kl" in logs) == (weight > 0)
        model.cfg = dataclasses.replace(cfg, overshoot=1.0)  # measure both the same way
        with torch.no_grad():
            open_kl[weight] = model.loss(batch)[1]["open_kl"]
    assert open_kl[1.0] < 0.8 * open_kl[0.0]


def _trained_without_and_with(
    key: str, cfg: RSSMConfig, batch, fit, steps: int, figure: str, preprocess=None
) -> dict[float, float]:
    """Train ``cfg`` with ``key`` at 0 and at 1 (same seed, same batch, ``steps`` updates) and read the loss log
    ``figure`` of both with ``key`` at 1 (so both are measured the same way), averaged over three draws."""
    out = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        model = build_model("rssm", dataclasses.replace(cfg, **{key: weight}), (3, 64, 64), 6)
        if preprocess is not None:
            model.bind_data("Pong", preprocess)
        logs = fit(model, batch, steps)[-1]
        assert (figure in logs) == (weight > 0)
        model.cfg = dataclasses.replace(cfg, **{key: 1.0})
        with torch.no_grad():
            draws = []
            for seed in range(3):
                torch.manual_seed(seed)
                draws.append(model.loss(batch)[1][figure])
        out[weight] = sum(draws) / 3
    return out


def test_open_loop_reconstruction_trains_the_dynamics_not_the_decoder(pong_dataset: Path, fit) -> None:
    """``open_recon`` decodes the open-loop rollouts against the real frames: its gradient reaches the sequence
    model and the prior, never the decoder, and trained with it the rollouts' frames are closer to the real ones
    than trained without it (same seed, same batch, measured the same way over three draws of the rollouts)."""
    cfg = dataclasses.replace(SMALL, n_future=6)
    batch = _batch(pong_dataset, cfg)
    torch.manual_seed(0)
    model = build_model("rssm", dataclasses.replace(cfg, open_recon=1.0), (3, 64, 64), 6)
    hs, zs, posts, _, _ = model._filter(batch.frames, batch.actions)
    open_loss, logs = model._open_loop_loss(hs, zs, torch.stack(posts, 1), batch.actions, batch)
    assert set(logs) == {"open_recon", "open_weighted_recon"}  # no KL or head terms without overshoot
    open_loss.backward()
    assert all(p.grad is None for p in model.decoder.parameters())
    assert model.gru.weight_hh.grad is not None and model.gru.weight_hh.grad.abs().sum() > 0
    assert model.prior[0].weight.grad is not None and model.prior[0].weight.grad.abs().sum() > 0
    error = _trained_without_and_with("open_recon", cfg, batch, fit, 150, "open_weighted_recon")
    assert error[1.0] < 0.85 * error[0.0]


def test_the_object_term_teaches_h_where_the_frame_detector_finds_the_objects(pong_dataset: Path, fit) -> None:
    """``object_weight``: ``h_t`` (made before frame t is seen) learns to say where the frame detector finds the
    ball and paddles in frame t; it needs the data's preprocessing and refuses games other than Pong."""
    batch = _batch(pong_dataset)
    torch.manual_seed(0)
    model = build_model("rssm", dataclasses.replace(SMALL, object_weight=1.0), (3, 64, 64), 6)
    with pytest.raises(RuntimeError, match="bind_data"):
        model.loss(batch)
    preprocess = SequenceDataset(pong_dataset, seq_len=2).preprocess
    with pytest.raises(ValueError, match="Pong"):
        model.bind_data("Freeway", preprocess)
    model.bind_data("Pong", preprocess)
    logs = fit(model, batch, 60)
    assert logs[-1]["object_place"] < 0.3 * logs[0]["object_place"]
    assert logs[-1]["object_ball_px"] < logs[0]["object_ball_px"]
    plain = build_model("rssm", SMALL, (3, 64, 64), 6)
    assert plain.object_head is None and "object_place" not in plain.loss(batch)[1]  # off by default


def test_the_open_loop_object_term_teaches_the_rolled_out_h_where_the_ball_goes(pong_dataset: Path, fit) -> None:
    """``open_object``: the object head on the prior rolled out alone from the context; trained with it, the
    rolled-out ``h`` says where the frame detector finds the ball in the real frames ahead closer than trained
    with the object term on filtered states only (same seed, same batch, measured the same way)."""
    batch = _batch(pong_dataset, dataclasses.replace(SMALL, n_future=6))
    preprocess = SequenceDataset(pong_dataset, seq_len=2).preprocess
    cfg = dataclasses.replace(SMALL, n_future=6, object_weight=1.0)
    with pytest.raises(ValueError, match="object_weight"):
        build_model("rssm", dataclasses.replace(SMALL, open_object=1.0), (3, 64, 64), 6)
    place = _trained_without_and_with("open_object", cfg, batch, fit, 100, "open_object_place", preprocess)
    assert place[1.0] < 0.8 * place[0.0]


def test_encoder_frames_read_each_frame_with_its_predecessors(pong_dataset: Path) -> None:
    """``encoder_frames=2``: the posterior's encoder reads [frame, previous frame]; grown from a one-frame model
    (the older frame's weights at zero, as ``init_from`` grows them) it encodes as that model does, and once
    those weights count, what the previous frame shows changes the encoding."""
    from world_models.base import stack_predecessors
    from world_models.training.weights import grow_inputs

    batch = _batch(pong_dataset)
    torch.manual_seed(0)
    one = build_model("rssm", SMALL, (3, 64, 64), 6)
    two = build_model("rssm", dataclasses.replace(SMALL, encoder_frames=2), (3, 64, 64), 6)
    weights, grown = grow_inputs(one.state_dict(), two.state_dict())
    assert grown == ["encoder.conv.0.weight"]
    two.load_state_dict(weights)
    with torch.no_grad():
        stacked = stack_predecessors(batch.frames, 2)  # (B, T, 6, H, W): frame t, then frame t - 1
        alone = one.encoder(batch.frames.flatten(0, 1))
        # the same up to the order of the sums (which GroupNorm over a near-uniform background magnifies)
        assert torch.allclose(two.encoder(stacked.flatten(0, 1)), alone, atol=1e-3)
        two.encoder.conv[0].weight[:, 3:].normal_(0, 0.1)
        assert torch.equal(stacked[:, 1:, 3:], batch.frames[:, :-1]) and torch.equal(
            stacked[:, 0, 3:], batch.frames[:, 0]
        )
        still = stacked.clone()
        still[:, :, 3:] = still[:, :, :3]  # as if nothing had moved
        moved = two.encoder(stacked.flatten(0, 1)) - two.encoder(still.flatten(0, 1))
        assert moved.abs().amax() > 0.05
    with pytest.raises(ValueError, match="encoder_frames"):
        build_model("rssm", dataclasses.replace(SMALL, encoder_frames=0), (3, 64, 64), 6)


def test_init_from_a_model_without_a_new_head_starts_only_that_head_fresh(
    tiny_rssm: Path, pong_dataset: Path, tmp_path: Path
) -> None:
    from world_models.checkpoint import load_model
    from world_models.training import train

    overrides = ["steps=1", "lr=0", "batch_size=4", "n_past=2", "n_future=3", "deter=32", "stoch=4", "classes=4"]
    overrides += ["hidden=32", "embed=32", "nf=8", "image_every=0", "object_weight=1", f"init_from={tiny_rssm}"]
    grown = train("rssm", pong_dataset, tmp_path / "grown", overrides, progress=False)
    source, _ = load_model(tiny_rssm)
    model, _ = load_model(grown)
    assert model.object_head is not None
    for name, weight in source.state_dict().items():
        assert torch.equal(model.state_dict()[name], weight), name  # lr=0: the copied weights stay the source's


def test_filtered_rewards_are_the_head_on_the_posterior_states(pong_dataset: Path) -> None:
    torch.manual_seed(0)
    model = build_model("rssm", SMALL, (3, 64, 64), 6).eval()
    batch = _batch(pong_dataset)
    signs = model.filtered_rewards(batch.frames, batch.actions)
    assert signs.shape == batch.actions.shape and set(signs.unique().tolist()) <= {-1.0, 0.0, 1.0}
    with torch.no_grad():
        model.reward_head[-1].bias.copy_(torch.tensor([0.0, 0.0, 100.0]))  # class 2: the player scores
    assert torch.equal(model.filtered_rewards(batch.frames, batch.actions), torch.ones_like(signs))


def test_points_to_end_ends_an_imagined_game_when_a_side_reaches_them(pong_dataset: Path) -> None:
    """The game's rule as an imagination setting: the frames are cropped below the score, so the termination
    head cannot see a game end; with ``points_to_end`` a side that scores that many drawn points ends it."""
    torch.manual_seed(0)
    model = build_model("rssm", SMALL, (3, 64, 64), 6).eval()
    batch = _batch(pong_dataset)
    with torch.no_grad():
        model.reward_head[-1].bias.copy_(torch.tensor([0.0, 0.0, 100.0]))  # the player scores every step
        model.term_head[-1].bias.fill_(-100.0)  # the head never ends an episode
        state = model.start(batch.frames[:, :2], batch.actions[:, :1])
        ends = [float(model.step(state, torch.zeros(4, dtype=torch.int64)).terminated.max())]
        model.cfg = dataclasses.replace(SMALL, points_to_end=3)
        state = model.start(batch.frames[:, :2], batch.actions[:, :1])
        for _ in range(7):
            state, _, term = model.step(state, torch.zeros(4, dtype=torch.int64))
            ends.append(float(term.min()))
    assert ends == [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0]  # off; then the 3rd point ends it, and the 6th


def test_an_agent_observes_the_objects_alone_in_the_dream_and_in_the_real_game(
    tiny_rssm: Path, tiny_object_rssm: Path, tmp_path: Path
) -> None:
    """``obs_type="objects"``: the ball and paddles an object-state ``rssm`` holds, without ``h`` and ``z``, in
    its learned env (as its dream steps them) and in the real twin (as the frame detector reads them)."""
    from agents.dream import DreamConfig, train_in_dream
    from agents.evaluate import evaluate_agent, load_agent
    from learned_envs.env import LearnedVectorEnv
    from learned_envs.twin import make_real_twin
    from world_models.pixel.rssm_objects import FEATURES, object_features

    venv = LearnedVectorEnv(tiny_object_rssm, 4, device="cpu", obs_type="objects")
    obs, _ = venv.reset(seed=0)
    obs, *_ = venv.step(np.zeros(4, dtype=np.int64))
    assert obs.shape == (4, FEATURES) and venv.single_observation_space.shape == (FEATURES,)
    expected = object_features(venv.state["obj"]).clamp(-venv.model.feature_bound, venv.model.feature_bound)
    assert np.allclose(obs, expected.numpy(), atol=1e-6)
    latent = LearnedVectorEnv(tiny_object_rssm, 4, device="cpu", obs_type="latent")
    assert latent.single_observation_space.shape[0] > FEATURES
    with pytest.raises(ValueError, match="obs_type 'objects' needs a model that holds objects"):
        LearnedVectorEnv(tiny_rssm, 1, device="cpu", obs_type="objects")
    twin = make_real_twin(tiny_object_rssm, obs_type="objects")
    seen, _ = twin.reset(seed=0)
    for a in (2, 3, 0):
        seen, *_ = twin.step(a)
    state = twin.observer.last_state
    assert seen.shape == (FEATURES,) and np.allclose(seen, object_features(state["obj"])[0].numpy(), atol=1e-6)
    assert seen[0] == 1.0  # the detector found the player's paddle in the real frame
    twin.close()
    cfg = DreamConfig(
        env=str(tiny_object_rssm),
        obs_type="objects",
        steps=64,
        n_envs=8,
        n_steps=8,
        batch_size=32,
        n_epochs=1,
        eval_every=0,
        eval_episodes=0,
        device="cpu",
        net_arch=[16],
    )
    path = train_in_dream(cfg, tmp_path / "agent", progress=False)
    policy, meta = load_agent(path)
    assert meta["obs_type"] == "objects" and policy.observation_space.shape == (FEATURES,)
    assert len(evaluate_agent(path, episodes=1, seed=0, progress=False, max_steps=20)["scores"]) == 1
