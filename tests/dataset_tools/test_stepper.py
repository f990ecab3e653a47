"""AleStepper: the same game as gymnasium's ALE v5 env, with sticky actions drawn per episode seed."""

from __future__ import annotations

from typing import Any

import numpy as np

from dataset_tools.games import EnvSettings, make_env
from dataset_tools.stepper import AleStepper


def _stepper_episode(stepper: AleStepper, seed: int, actions: np.ndarray) -> dict[str, Any]:
    frames, rams = np.empty((len(actions) + 1, 210, 160), np.uint8), np.empty((len(actions) + 1, 128), np.uint8)
    stepper.reset(seed, frames[0], rams[0])
    out: dict[str, list] = {"reward": [], "terminated": [], "truncated": []}
    n = len(actions)
    for t, action in enumerate(actions):
        reward, term, trunc = stepper.step(int(action), frames[t + 1], rams[t + 1])
        out["reward"].append(reward), out["terminated"].append(term), out["truncated"].append(trunc)
        if term or trunc:
            n = t + 1
            break
    return {"rgb": stepper.colours.rgb[frames[: n + 1]], "ram": rams[: n + 1], **out}


def _gym_episode(settings: EnvSettings, actions: np.ndarray) -> dict[str, Any]:
    env = make_env(settings)
    obs, _ = env.reset(seed=123)
    rgb, ram = [obs], [env.unwrapped.ale.getRAM()]
    out: dict[str, list] = {"reward": [], "terminated": [], "truncated": []}
    for action in actions:
        obs, reward, term, trunc, _ = env.step(int(action))
        rgb.append(obs), ram.append(env.unwrapped.ale.getRAM())
        out["reward"].append(float(reward)), out["terminated"].append(term), out["truncated"].append(trunc)
        if term or trunc:
            break
    env.close()
    return {"rgb": np.array(rgb), "ram": np.array(ram), **out}


def test_without_sticky_actions_it_is_the_gymnasium_env() -> None:
    settings = EnvSettings(game="Breakout", frameskip=2, repeat_action_probability=0.0, max_episode_steps=150)
    actions = np.random.default_rng(0).integers(0, 4, 200)
    expected = _gym_episode(settings, actions)
    stepper = AleStepper(settings)
    for seed in (1, 2):  # the second episode starts from the restored start state
        got = _stepper_episode(stepper, seed, actions)
        assert len(got["rgb"]) == len(expected["rgb"]) == 151 and got["truncated"][-1]
        for key in ("rgb", "ram", "reward", "terminated", "truncated"):
            np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
    stepper.close()


class _Recorder:
    """Wraps the ALE interface and records the action applied at every emulator frame."""

    def __init__(self, ale: Any) -> None:
        self.ale, self.applied = ale, []

    def act(self, action: Any) -> int:
        self.applied.append(int(action.value))
        return self.ale.act(action)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ale, name)


def test_sticky_actions_follow_ale_semantics_and_the_seed() -> None:
    stepper = AleStepper(EnvSettings(game="Pong", frameskip=4, repeat_action_probability=0.25))
    recorder = _Recorder(stepper.ale)
    stepper.ale = recorder
    frame, ram = np.empty((210, 160), np.uint8), np.empty(128, np.uint8)
    # alternating UP (2) / DOWN (3): a frame keeps the previous frame's action with probability 0.25
    requested = [2, 3] * 250
    stepper.reset(5, frame, ram)
    for action in requested:
        stepper.step(action, frame, ram)
    first = recorder.applied
    wanted = np.repeat([stepper.actions[a].value for a in requested], 4)  # action indices -> ALE actions
    assert first[0] in (0, wanted[0])  # before the first draw the previous action is NOOP
    # the first frame of each step keeps the other action with probability 0.25 (x 0.996: the
    # previous step may itself not have switched yet); later frames only if all before them kept it
    starts = np.arange(4, len(wanted), 4)
    assert 0.19 < np.mean(np.asarray(first)[starts] != wanted[starts]) < 0.31
    assert np.mean(np.asarray(first)[starts + 1] != wanted[starts + 1]) < 0.12
    recorder.applied = []
    stepper.reset(5, frame, ram)
    for action in requested:
        stepper.step(action, frame, ram)
    assert recorder.applied == first  # same seed, same draws
    recorder.applied = []
    stepper.reset(6, frame, ram)
    for action in requested:
        stepper.step(action, frame, ram)
    assert recorder.applied != first
    stepper.close()


def test_always_sticky_keeps_noop() -> None:
    stepper = AleStepper(EnvSettings(game="Pong", repeat_action_probability=1.0))
    recorder = _Recorder(stepper.ale)
    stepper.ale = recorder
    frame, ram = np.empty((210, 160), np.uint8), np.empty(128, np.uint8)
    stepper.reset(0, frame, ram)
    for _ in range(20):
        stepper.step(2, frame, ram)
    assert set(recorder.applied) == {0}
    stepper.close()


def test_sticky_actions_match_ale_v5_in_distribution() -> None:
    """The collector's own sticky actions against ALE's: the player paddle's height after a fixed
    action sequence, over 80 seeded episodes of each (deterministic seeds, so not flaky)."""
    import ale_py
    import gymnasium as gym
    from scipy.stats import ks_2samp

    gym.register_envs(ale_py)
    actions = np.random.default_rng(0).integers(2, 4, size=30)  # RIGHT / LEFT: the paddle moves
    env = gym.make("ALE/Pong-v5")
    stepper = AleStepper(EnvSettings(game="Pong"))
    frame, ram = np.zeros((210, 160), np.uint8), np.zeros(128, np.uint8)
    ale_y, ours_y = [], []
    for s in range(80):
        env.reset(seed=1000 + s)
        stepper.reset(1000 + s, frame, ram)
        a_y, o_y = [], []
        for a in actions:
            env.step(int(a))
            stepper.step(int(a), frame, ram)
            a_y.append(int(env.unwrapped.ale.getRAM()[51]))
            o_y.append(int(ram[51]))
        ale_y.append(a_y)
        ours_y.append(o_y)
    env.close()
    ale_y, ours_y = np.array(ale_y), np.array(ours_y)  # (80, 30)
    assert ale_y[:, 5].std() > 2  # sticky actions spread the paddle: the comparison means something
    for t in (5, 15, 29):
        assert ks_2samp(ale_y[:, t], ours_y[:, t]).pvalue > 0.01, t
