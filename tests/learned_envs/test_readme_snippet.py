"""The README's Stable-Baselines3 snippet runs as written, at a small budget, and SB3 logs episode returns."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def snippet() -> str:
    match = re.search(r"<!-- sb3-snippet -->\n```python\n(.*?)```\n<!-- /sb3-snippet -->", README.read_text(), re.S)
    assert match, "README.md has no sb3-snippet block"
    return match.group(1)


def test_the_readme_sb3_snippet_trains_and_logs_episode_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    code = snippet()
    small = {
        "total_timesteps=4_000_000": "total_timesteps=8192",  # one rollout of 64 x 128 steps
        "repeat_action_probability=0.25)": "repeat_action_probability=0.25, max_episode_steps=30)",
    }
    for old, new in small.items():
        assert old in code, f"the snippet changed: {old!r} is gone"
        code = code.replace(old, new)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {"__name__": "readme_snippet"})
    out = capsys.readouterr().out
    assert re.search(r"ep_rew_mean\s*\|\s*-?\d", out), out[-2000:]
    assert re.search(r"real score: [+-]\d+", out)
    assert list((tmp_path / "runs" / "tb").glob("PPO_*/events.out.tfevents.*"))
