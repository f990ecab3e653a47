"""Every shipped learned env and agent gives the outputs it gave before ``world_models`` was grouped by role:
a few fixed steps of each env and the actions of each agent, against ``tests/data/shipped_outputs.json``
(written by ``tests/shipped_fingerprints.py`` with the code before the move)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from shipped_fingerprints import agent_fingerprint, certain_fingerprint, env_fingerprint  # noqa: E402

STORED = json.loads((Path(__file__).parent / "data" / "shipped_outputs.json").read_text())


@pytest.mark.parametrize("env_id", sorted(STORED["envs"]))
def test_shipped_env_steps_as_before(env_id: str) -> None:
    want, got = STORED["envs"][env_id], env_fingerprint(env_id)
    assert got["shape"] == want["shape"]
    assert got["rewards"] == want["rewards"] and got["terminated"] == want["terminated"]
    np.testing.assert_allclose(got["head"], want["head"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose([got["sum"], got["abs_sum"]], [want["sum"], want["abs_sum"]], rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("env_id", sorted(STORED["certain"]))
def test_object_dreams_with_certain_draws_step_as_before(env_id: str) -> None:
    np.testing.assert_allclose(certain_fingerprint(env_id), STORED["certain"][env_id], rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("name", sorted(STORED["agents"]))
def test_shipped_agent_acts_as_before(name: str) -> None:
    assert agent_fingerprint(name) == STORED["agents"][name]
