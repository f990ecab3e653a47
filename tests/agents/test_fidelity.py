"""learned-envs fidelity: Pong's figures from trajectories, and the command on a shipped dream."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agents.fidelity import NAMES, match_objects, named, statistics
from learned_envs.cli import main as cli_main


def _rally(turn_at: float, paddle_y: float, steps: int = 50, back: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """A ball served at x 80 flying right at 4 px per step (and 2 px down), turning back at ``turn_at`` at ``back``
    px per step, the player's paddle at ``paddle_y``; the point is lost when it leaves on the left."""
    tracks = np.zeros((steps, 3, 3))
    tracks[:, 0] = (1, 142, paddle_y)
    tracks[:, 1] = (1, 18, 100)
    x, y, dx = 80.0, 100.0, 4.0
    rewards = np.zeros(steps)
    for t in range(2, steps):
        tracks[t, 2] = (1, x, y)
        if x >= turn_at and dx > 0:
            dx = -back
        x, y = x + dx, y + 2
        if x < 10:
            rewards[t] = -1
            break
    return tracks, rewards


def test_statistics_of_a_return_and_a_lost_point() -> None:
    stats = statistics([_rally(turn_at=140, paddle_y=128)])
    assert stats["steps"] == 50 and stats["points_lost"] == pytest.approx(20.0) and stats["points_won"] == 0
    assert stats["returns"] == pytest.approx(20.0)  # one return in 50 steps
    assert stats["return_paddle_px_median"] < 12 and stats["returns_paddle_far"] == 0
    assert stats["rallies"] == 1 and stats["ball_dx_mean"] == pytest.approx(4.0)
    assert np.argmax(stats["ball_dx_hist"]) == 4 and np.argmax(stats["ball_dy_hist"]) == 2
    assert stats["turn_near"]["140"] == [1, 1] and stats["turn_near"]["136"] == [0, 1]
    far = statistics([_rally(turn_at=140, paddle_y=60)])  # returned with the paddle 60 px away: a dream's kindness
    assert far["returns_paddle_far"] == 1.0 and far["turn_far"]["140"] == [1, 1]
    assert stats["return_speeds"] == {"player": {"4": {"4": 1}}, "enemy": {}}  # turned back at its speed


def test_statistics_count_the_balls_speed_in_and_out_of_a_return() -> None:
    faster = statistics([_rally(turn_at=140, paddle_y=128, back=8.0), _rally(turn_at=140, paddle_y=128, back=12.0)])
    assert faster["return_speeds"]["player"] == {"4": {"8": 1, "12+": 1}}
    assert faster["arrivals"] == {"4": [2, 0, 2]}


def test_objects_are_matched_to_the_ram_by_position() -> None:
    rng = np.random.default_rng(0)
    truth = np.concatenate([np.ones((50, 3, 1)), rng.uniform(20, 140, (50, 3, 2))], -1)
    centres = truth[:, [2, 0, 1]] + rng.normal(0, 0.5, (50, 3, 3)) * [0, 1, 1]  # the model keeps ball, player, enemy
    mapping = match_objects(centres, truth)
    assert mapping == [1, 2, 0]
    assert np.allclose(named(centres, mapping), centres[:, [1, 2, 0]])
    assert len(NAMES) == 3


def test_fidelity_command_on_the_shipped_object_dream(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "fid"
    args = ["fidelity", "--checkpoint", "LearnedPongObjects-v1", "--envs", "8"]  # random actions: a short real game
    assert cli_main([*args, "--steps", "100", "--real-episodes", "1", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "| points lost |" in printed and "paddle near" in printed
    result = json.loads((out / "fidelity.json").read_text())
    assert result["mapping"] == {"player": 0, "enemy": 1, "ball": 2}
    assert result["real"]["steps"] > 700 and 0 < result["dream"]["steps"] <= 8 * 100
    assert (out / "fidelity.png").stat().st_size > 0 and (out / "fidelity.md").exists()
    # replays of the real arrivals: random play misses most balls, and so do its replays in the real game
    missed, real_again = result["counterfactual"]["player"]["missed"], result["real_again"]["player"]["missed"]
    assert missed[1] == real_again[1] > 5 and 0 <= missed[0] <= 1 and real_again[0] < 0.5
