"""LearnedEnv / LearnedVectorEnv: the gymnasium and SB3 contracts, determinism, batching, errors."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import learned_envs
from learned_envs.env import EnsembleVectorEnv, LearnedEnv, LearnedVectorEnv
from learned_envs.registration import shipped_checkpoint
from learned_envs.sb3 import SB3VecEnv
from learned_envs.twin import make_real_twin
from world_models import CheckpointError


@pytest.fixture(scope="module")
def registered(tiny_checkpoint: Path) -> str:
    learned_envs.register_checkpoint("TinyPong-v0", tiny_checkpoint, max_episode_steps=50, device="cpu")
    return "TinyPong-v0"


@pytest.mark.parametrize("obs_type", ["frames", "latent"])
def test_gymnasium_check_env(registered: str, obs_type: str) -> None:
    env = gym.make(registered, obs_type=obs_type, render_mode="rgb_array")
    check_env(env.unwrapped, skip_render_check=False)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert env.render().shape == (64, 64, 3)


@pytest.mark.parametrize("env_id", sorted(learned_envs.registration.SHIPPED))
def test_every_shipped_id_passes_both_env_checkers(env_id: str) -> None:
    """gymnasium's and SB3's check_env over every registered id with a shipped checkpoint."""
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    learned_envs.shipped_checkpoint(env_id)  # the shipped weights are part of the package
    env = gym.make(env_id, device="cpu", render_mode="rgb_array")
    objects = ("objects",) if env.unwrapped.vec.model.object_dim else ()  # an object-state rssm's own default
    for obs_type in ("frames", "latent", *objects):
        env = gym.make(env_id, obs_type=obs_type, device="cpu", render_mode="rgb_array")
        check_env(env.unwrapped, skip_render_check=False)
        sb3_check_env(env.unwrapped)


def test_sb3_check_env(tiny_checkpoint: Path) -> None:
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    sb3_check_env(LearnedEnv(tiny_checkpoint, device="cpu", obs_type="latent"))


def test_both_make_spellings_and_make_vec(registered: str, tiny_checkpoint: Path) -> None:
    assert gym.spec("LearnedPong-v0").vector_entry_point == "learned_envs.env:LearnedVectorEnv"
    env = gym.make("learned_envs:LearnedPong-v0", checkpoint=tiny_checkpoint, device="cpu")
    assert env.reset(seed=0)[0].shape == (64, 64, 3)
    venv = gym.make_vec(registered, num_envs=8)
    assert isinstance(venv, LearnedVectorEnv) and venv.metadata["autoreset_mode"].value == "SameStep"
    obs, _ = venv.reset(seed=1)
    assert obs.shape == (8, 64, 64, 3)
    obs, reward, term, trunc, _ = venv.step(np.zeros(8, dtype=np.int64))
    assert reward.shape == term.shape == trunc.shape == (8,)


def test_seeded_reset_is_reproducible(tiny_checkpoint: Path) -> None:
    runs = []
    for _ in range(2):
        env = LearnedEnv(tiny_checkpoint, device="cpu")
        obs, _ = env.reset(seed=123)
        frames = [obs]
        for a in [0, 2, 3, 2, 1]:
            frames.append(env.step(a)[0])
        runs.append(np.stack(frames))
    np.testing.assert_array_equal(runs[0], runs[1])
    other = LearnedEnv(tiny_checkpoint, device="cpu")
    first = [other.reset(seed=s)[0] for s in range(6)]
    assert any(not np.array_equal(first[0], f) for f in first[1:])  # different seeds, different starts


def test_vector_env_equals_single_envs(tiny_checkpoint: Path) -> None:
    n = 4
    venv = LearnedVectorEnv(tiny_checkpoint, n, device="cpu", obs_type="latent")
    obs, _ = venv.reset(seed=0, options={"context_index": list(range(n))})
    singles = [LearnedVectorEnv(tiny_checkpoint, 1, device="cpu", obs_type="latent") for _ in range(n)]
    single_obs = [s.reset(seed=0, options={"context_index": [i]})[0][0] for i, s in enumerate(singles)]
    np.testing.assert_allclose(obs, np.stack(single_obs), atol=1e-5)
    rng = np.random.default_rng(0)
    # An env that ends restarts from a random context, so compare each env until it ends. The
    # untrained test model's reward logits are near ties, which float noise of batch vs single
    # can flip: rewards must agree almost everywhere, latent states to 1e-5.
    alive = np.ones(n, dtype=bool)
    same_reward = []
    for _ in range(5):
        actions = rng.integers(0, 6, size=n)
        obs, reward, term, trunc, _ = venv.step(actions)
        outs = [s.step(actions[i : i + 1]) for i, s in enumerate(singles)]
        single_done = np.concatenate([o[2] | o[3] for o in outs])
        alive &= ~(term | trunc) & ~single_done
        np.testing.assert_allclose(obs[alive], np.concatenate([o[0] for o in outs])[alive], atol=1e-5)
        same_reward.extend(reward[alive] == np.concatenate([o[1] for o in outs])[alive])
    assert alive.any() and np.mean(same_reward) >= 0.9


def test_autoreset_and_truncation(tiny_checkpoint: Path) -> None:
    venv = LearnedVectorEnv(tiny_checkpoint, 3, device="cpu", max_episode_steps=4)
    venv.reset(seed=0)
    ended = np.zeros(3, dtype=bool)
    for _ in range(4):
        obs, _, term, trunc, info = venv.step(np.zeros(3, dtype=np.int64))
        done = term | trunc
        ended |= done
        if done.any():
            assert (info["_final_obs"] == done).all()
            assert all(info["final_obs"][i].shape == (64, 64, 3) for i in np.nonzero(done)[0])
    assert ended.all()  # every env ended by step 4 (terminated earlier, or truncated at 4)
    obs, *_ = venv.step(np.zeros(3, dtype=np.int64))  # continues after the same-step reset
    assert obs.shape == (3, 64, 64, 3)


def test_an_ensemble_steps_each_member_on_its_share_of_the_envs(
    tiny_checkpoint: Path, tiny_object_checkpoint: Path
) -> None:
    kw = {"device": "cpu", "obs_type": "latent", "max_episode_steps": 3}
    mix = EnsembleVectorEnv([tiny_checkpoint, tiny_checkpoint], 5, **kw)
    assert [m.num_envs for m in mix.members] == [3, 2] and mix.observation_space.shape[0] == 5
    alone = [LearnedVectorEnv(tiny_checkpoint, n, **kw) for n in (3, 2)]
    obs, _ = mix.reset(seed=7)
    expect = np.concatenate([a.reset(seed=7 + i)[0] for i, a in enumerate(alone)])
    np.testing.assert_allclose(obs, expect, atol=1e-6)  # member i is seeded seed + i
    ended = np.zeros(5, dtype=bool)
    for _ in range(3):
        actions = np.arange(5) % 6
        obs, reward, term, trunc, info = mix.step(actions)
        outs = [alone[0].step(actions[:3]), alone[1].step(actions[3:])]  # the same draws, member by member
        np.testing.assert_allclose(obs, np.concatenate([o[0] for o in outs]), atol=1e-6)
        np.testing.assert_array_equal(reward, np.concatenate([o[1] for o in outs]))
        done = term | trunc
        ended |= done
        assert obs.shape == (5, mix.single_observation_space.shape[0]) and reward.shape == (5,)
        if done.any():
            assert (info["_final_obs"] == done).all()
            assert all(info["final_obs"][i].shape == obs.shape[1:] for i in np.nonzero(done)[0])
    assert ended.all()  # truncated at 3 steps in both members
    sb3 = SB3VecEnv(mix)  # the same-step autoreset SB3 needs
    sb3.reset()
    assert len(sb3.step(np.zeros(5, dtype=np.int64))[3]) == 5
    with pytest.raises(ValueError, match="observe differently"):
        EnsembleVectorEnv([tiny_checkpoint, tiny_object_checkpoint], 4, device="cpu", obs_type="latent")
    with pytest.raises(ValueError, match="at least as many envs"):
        EnsembleVectorEnv([tiny_checkpoint] * 3, 2, device="cpu")


def test_sb3_ppo_learns_on_the_adapter(tiny_checkpoint: Path) -> None:
    from stable_baselines3 import PPO

    env = SB3VecEnv(LearnedVectorEnv(tiny_checkpoint, 8, device="cpu", obs_type="latent", max_episode_steps=20))
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(256)
    assert model.num_timesteps >= 256
    frames_env = SB3VecEnv(LearnedVectorEnv(tiny_checkpoint, 4, device="cpu", max_episode_steps=20))
    PPO("CnnPolicy", frames_env, n_steps=16, batch_size=32, n_epochs=1, seed=0, device="cpu").learn(64)


def test_the_adapter_reports_episodes_as_vec_monitor_does(tiny_checkpoint: Path) -> None:
    env = SB3VecEnv(LearnedVectorEnv(tiny_checkpoint, 3, device="cpu", obs_type="latent", max_episode_steps=5))
    env.seed(0)
    env.reset()
    returns, lengths, reported = np.zeros(3), np.zeros(3, dtype=int), 0
    for _ in range(12):
        _, reward, done, infos = env.step(np.zeros(3, dtype=np.int64))
        returns += reward
        lengths += 1
        for i, info in enumerate(infos):
            assert ("episode" in info) == bool(done[i])
            if done[i]:
                assert info["episode"]["l"] == lengths[i] <= 5 and np.isclose(info["episode"]["r"], returns[i])
                returns[i], lengths[i], reported = 0.0, 0, reported + 1
    assert reported >= 6  # every env ended at least twice (truncated at 5 steps if not earlier)


def test_ppo_settings_scale_the_rollout_with_the_envs() -> None:
    from learned_envs.sb3 import ppo_settings

    assert ppo_settings(64)["n_steps"] == 128 and ppo_settings(64)["batch_size"] == 1024
    assert ppo_settings(8)["n_steps"] * 8 == ppo_settings(64)["n_steps"] * 64
    with pytest.raises(ValueError, match="num_envs"):
        ppo_settings(0)


def test_object_ids_observe_their_objects_by_default_with_bounds_that_hold() -> None:
    for env_id in ("LearnedPongObjects-v1", "LearnedPongScene-v0", "LearnedPong-v2"):
        env = gym.make(env_id, device="cpu")
        space = env.observation_space
        assert env.unwrapped.vec.obs_type == "latent" and len(space.shape) == 1
        assert np.isfinite(space.low).all() and np.isfinite(space.high).all()
        obs, _ = env.reset(seed=0)
        for _ in range(30):
            assert space.contains(obs)
            obs, *_, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                obs, _ = env.reset()
    assert gym.make("LearnedPong-v1", device="cpu").observation_space.shape == (64, 64, 3)  # a pixel model: frames


def test_bad_input(tiny_checkpoint: Path, tmp_path: Path, registered: str) -> None:
    env = gym.make(registered)
    with pytest.raises(gym.error.ResetNeeded):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"\[0, 6\)"):
        env.step(7)
    venv = LearnedVectorEnv(tiny_checkpoint, 2, device="cpu")
    venv.reset(seed=0)
    with pytest.raises(ValueError, match="2 integers"):
        venv.step(np.array([0, 9]))
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        LearnedEnv(tmp_path / "missing")
    with pytest.raises(ValueError, match="models Pong, not Breakout"):
        LearnedEnv(tiny_checkpoint, game="Breakout")
    with pytest.raises(FileNotFoundError):
        learned_envs.register_checkpoint("Nope-v0", tmp_path / "missing")


@pytest.mark.parametrize("obs_type", ["frames", "latent"])
def test_real_twin_matches_the_learned_observation_space(tiny_checkpoint: Path, obs_type: str) -> None:
    learned = LearnedEnv(tiny_checkpoint, device="cpu", obs_type=obs_type)
    twin = make_real_twin(tiny_checkpoint, obs_type=obs_type, max_episode_steps=10)
    assert twin.observation_space == learned.observation_space
    assert twin.settings.frameskip == 4 and twin.settings.game == "Pong"
    obs, _ = twin.reset(seed=0)
    assert twin.observation_space.contains(obs)
    for _ in range(3):
        obs, reward, term, trunc, _ = twin.step(twin.action_space.sample())
        assert twin.observation_space.contains(obs)


@pytest.mark.parametrize("checkpoint", ["LearnedPong-v2", "tiny"])
def test_twins_of_one_model_step_together_as_they_step_alone(checkpoint: str, tiny_checkpoint: Path) -> None:
    """RealTwin.step_many (one batch through a shared model: what real games side by side run) gives the
    observations each twin gives on its own: the frames-only v2 batches its extraction, the pixel model
    steps one by one."""
    from learned_envs.twin import RealTwin, load_twin_model

    ckpt = tiny_checkpoint if checkpoint == "tiny" else checkpoint
    loaded = load_twin_model(ckpt)
    together = [make_real_twin(ckpt, obs_type="latent", loaded=loaded, max_episode_steps=40) for _ in range(3)]
    alone = [make_real_twin(ckpt, obs_type="latent", max_episode_steps=40) for _ in range(3)]
    assert all(t.model is loaded[0] for t in together) and alone[0].model is not alone[1].model
    for i in range(3):
        np.testing.assert_array_equal(together[i].reset(seed=i)[0], alone[i].reset(seed=i)[0])
    rng = np.random.default_rng(0)
    for _ in range(12):
        actions = [int(a) for a in rng.integers(0, 6, 3)]
        stepped = RealTwin.step_many(together, actions)
        for i, (obs, reward, term, trunc, _) in enumerate(stepped):
            o, r, te, tr, _ = alone[i].step(actions[i])
            np.testing.assert_allclose(obs, o, atol=1e-5)
            assert (reward, term, trunc) == (r, te, tr)
            np.testing.assert_array_equal(together[i].last_raw_frame, alone[i].last_raw_frame)
    assert all(v.shape[0] == 1 for v in together[0].observer.last_state.values())  # each twin keeps its own state


def test_play_writes_a_side_by_side_gif(tiny_checkpoint: Path, tmp_path: Path) -> None:
    import imageio.v3 as iio

    from learned_envs.cli import main

    out = tmp_path / "play.gif"
    assert (
        main(["play", "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--steps", "6", "--agent", "scripted"])
        == 0
    )
    video = iio.imread(out)
    assert video.shape[0] == 6 and video.shape[2] == 3 * (3 * 64 + 4)  # real | dream | difference, x3
    assert main(["play", "--checkpoint", str(tmp_path / "none"), "--out", str(out)]) == 2


def test_a_gif_keeps_every_frame_and_the_colours_of_an_atari_video(tmp_path: Path) -> None:
    import imageio.v3 as iio

    from learned_envs.play import write_video

    rng = np.random.default_rng(0)

    def video(n_colours: int) -> list[np.ndarray]:
        colours = rng.integers(0, 256, (n_colours, 3), dtype=np.uint8)
        frames = [colours[rng.integers(0, n_colours, (15, 10))].repeat(2, 0).repeat(2, 1) for _ in range(25)]
        frames[7][:4, :4] = (1, 2, 3)  # a colour in one frame only
        return frames  # every frame differs, and each is upscaled x2, as play's are (x3)

    few = video(60)  # more colours than Pong's, fewer than a palette's 256: kept exactly
    back = iio.imread(write_video(tmp_path / "few.gif", few))
    assert back.shape == (25, 30, 20, 3)
    np.testing.assert_array_equal(back, np.stack(few))
    many = video(1000)  # more than a GIF holds: near, frame for frame
    back = iio.imread(write_video(tmp_path / "many.gif", many))
    assert back.shape == (25, 30, 20, 3) and np.abs(back.astype(int) - np.stack(many)).mean() < 12


def test_every_command_takes_a_registered_id(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import imageio.v3 as iio

    from learned_envs.cli import main

    out = tmp_path / "x.gif"
    assert main(["play", "--checkpoint", "LearnedPongObjects-v1", "--out", str(out), "--steps", "3"]) == 0
    assert iio.imread(out).shape[0] == 3
    assert main(["evaluate", "--checkpoint", "NoSuchPong-v9", "--data", str(tmp_path), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "'NoSuchPong-v9' is neither a registered learned env" in err and "LearnedPongObjects-v1" in err


def test_object_env_bf16_matches_float32_and_resets_from_cached_starts() -> None:
    envs = {
        p: LearnedVectorEnv(
            shipped_checkpoint("LearnedPongObjects-v0"), 8, device="cpu", obs_type="latent", precision=p
        )
        for p in ("float32", "bfloat16")
    }
    assert envs["float32"]._start_cache is not None  # object_dynamics starts deterministically
    obs = {p: env.reset(seed=1)[0] for p, env in envs.items()}
    for _ in range(3):
        obs = {p: env.step(np.arange(8) % 6)[0] for p, env in envs.items()}
    assert np.abs(obs["float32"] - obs["bfloat16"]).max() < 0.05  # 0.05 of the half-width: ~4 px
    with pytest.raises(ValueError, match="precision"):
        LearnedVectorEnv(shipped_checkpoint("LearnedPongObjects-v0"), 1, precision="float16")


def test_ids_not_for_agents_say_so_in_plain_text(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="learned_envs"):
        gym.make("LearnedPong-v1", device="cpu")
    assert any("falls apart" in r.getMessage() and "LearnedPong-v2" in r.getMessage() for r in caplog.records)
    assert not any("\x1b[" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level("WARNING", logger="learned_envs"):
        gym.make("LearnedPongObjects-v1", device="cpu")
    assert not caplog.records


def test_gym_make_takes_imagination_settings() -> None:
    """A shipped id's settings (``LearnedPong-v6``'s config sets ``exit_reward``) are undone through ``gym.make``."""
    shipped = gym.make("LearnedPong-v6", device="cpu").unwrapped
    told = gym.make("LearnedPong-v6", device="cpu", settings=["exit_reward=false"]).unwrapped
    assert shipped.model.cfg.exit_reward and not told.model.cfg.exit_reward
    with pytest.raises(ValueError, match="not an imagination setting"):
        gym.make("LearnedPong-v6", device="cpu", settings=["deter=8"])


@pytest.mark.parametrize(
    "env_id, setting",
    [("LearnedPong-v7", "pass_reward"), ("LearnedPong-v8", "line_reward")],
)
def test_learned_pong_v7_and_v8_are_v6_with_another_reward_rule(env_id: str, setting: str) -> None:
    """v7 and v8 ship v6's weights with another reward rule (``pass_reward``: the point as the ball passes a
    paddle; ``line_reward``: at the step the game counts it): undone, each dreams v6's dreams; with it, its rewards
    are the rule on the objects its own dream stepped through."""
    import torch

    from world_models.pixel.rssm_objects import line_points, pass_points

    rule = {"pass_reward": lambda f: pass_points(f[:, :2]), "line_reward": line_points}[setting]
    v6 = gym.make_vec("LearnedPong-v6", num_envs=8, device="cpu")
    shipped = gym.make_vec(env_id, num_envs=8, device="cpu")
    undone = gym.make_vec(env_id, num_envs=8, device="cpu", settings=[f"{setting}=false"])
    assert getattr(shipped.unwrapped.model.cfg, setting) and not getattr(v6.unwrapped.model.cfg, setting)
    outs = {}
    for name, venv in (("v6", v6), ("shipped", shipped), ("undone", undone)):
        venv.reset(seed=0)
        obs, rewards, ruled = [], [], []
        for actions in np.random.default_rng(0).integers(0, 6, (60, 8)):
            before = venv.unwrapped.state["obj"]
            o, r, term, trunc, _ = venv.step(actions)
            obs.append(o)
            rewards.append(r)
            now = venv.unwrapped.state["obj"]  # a new episode's where one ended: its reward is then not checked
            ruled.append(np.where(term | trunc, r, rule(torch.cat([now[:, :1], before], 1)).numpy()))
        outs[name] = (np.stack(obs), np.stack(rewards), np.stack(ruled))
    assert np.array_equal(outs["v6"][0], outs["undone"][0]) and np.array_equal(outs["v6"][1], outs["undone"][1])
    assert np.abs(outs["shipped"][1]).sum() > 0  # points come in 60 random steps of 8 dreams
    assert np.array_equal(outs["shipped"][1], outs["shipped"][2])


def test_dreams_not_for_agents_say_which_to_use(caplog: pytest.LogCaptureFixture) -> None:
    """Ids whose agents do worse name the dreams to train agents in when they are made; those dreams say nothing."""
    from learned_envs.registration import NOTES, shipped_note

    for env_id in ("LearnedPong-v1", "LearnedPong-v5", "LearnedPong-v8"):
        assert "to train agents use LearnedPong-v7" in NOTES[env_id]
        assert shipped_note(shipped_checkpoint(env_id)) == NOTES[env_id]
    assert shipped_note(shipped_checkpoint("LearnedPong-v7")) is None
    assert shipped_note(shipped_checkpoint("LearnedPong-v2")) is None
    with caplog.at_level("WARNING"):
        gym.make("LearnedPong-v8", device="cpu")
    assert "to train agents use LearnedPong-v7" in caplog.text
