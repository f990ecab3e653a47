from __future__ import annotations

import pytest

from dataset_tools.games import EnvSettings, UnknownGameError, ale_games, make_env, resolve_game


@pytest.mark.parametrize("name", ["Pong", "pong", "ALE/Pong-v5", " PONG "])
def test_resolve_game_variants(name: str) -> None:
    assert resolve_game(name) == "Pong"


def test_unknown_game_names_close_matches() -> None:
    with pytest.raises(UnknownGameError, match="did you mean: Pong"):
        resolve_game("Pnog")
    with pytest.raises(UnknownGameError, match="none close"):
        resolve_game("Zzzzzzzzzzz")


def test_every_ale_game_is_listed() -> None:
    games = ale_games()
    assert {"Pong", "Breakout", "SpaceInvaders", "Boxing"} <= set(games)
    assert len(games) > 50


def test_env_settings_round_trip_and_make() -> None:
    settings = EnvSettings(game="Breakout", frameskip=2, repeat_action_probability=0.0, max_episode_steps=10)
    assert EnvSettings.from_dict(settings.to_dict()) == settings
    env = make_env(settings)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (210, 160, 3)
    steps = 0
    while True:
        _, _, term, trunc, _ = env.step(0)
        steps += 1
        if term or trunc:
            break
    assert steps == 10
    env.close()
