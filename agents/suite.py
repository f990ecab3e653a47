"""``learned-envs suite``: one table of dream agents' real scores over every game, beside the published ones.

Each agent is scored as ``evaluate-agent`` does (the Atari 100k protocol: full games, sticky actions 0.25,
episode seeds ``seed, seed + 1, ...``); agents of one game are its training seeds. Per game the table gives
every agent's mean, the mean over all their games, the human-normalised score
``(score - random) / (human - random)`` and the game's anchors (random, human, SimPLe, DIAMOND; from
:attr:`dataset_tools.atari.GameSpec.anchors`). Written as ``suite.md``, ``suite.json`` and ``suite.png``.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from agents.evaluate import SHIPPED_AGENTS, evaluate_agent

DEFAULT_AGENTS = ("PongDreamPPO-v2", "FreewayDreamPPO-v0", "BoxingDreamPPO-v0")
"""The newest shipped dream agent of each game (what ``suite`` scores without ``--agents``)."""


def find_agents(paths: list[str | Path]) -> list[str]:
    """Agents meant by ``paths``: a shipped agent's name, an agent directory (with ``agent.json``), or a
    directory whose subdirectories (at any depth) hold agents: every one counts (a loop's ``agents/`` holds its
    iteration agents too)."""
    found: list[str] = []
    for path in paths:
        p = Path(path)
        if str(path) in SHIPPED_AGENTS or (p / "agent.json").exists() or p.suffix in (".pt", ".zip"):
            found.append(str(path))
        elif p.is_dir():
            inside = sorted(str(a.parent) for a in p.rglob("agent.json"))
            if not inside:
                raise ValueError(f"{path}: holds no agent (no agent.json below it)")
            found.extend(inside)
        else:
            raise ValueError(f"{path}: no such agent or directory")
    return found


def normalised(score: float, anchors: dict[str, float]) -> float | None:
    """The human-normalised score, or None for a game without random and human anchors."""
    if "random" not in anchors or "human" not in anchors:
        return None
    return (score - anchors["random"]) / (anchors["human"] - anchors["random"])


def suite(
    agents: list[str | Path] | None = None,
    episodes: int = 10,
    seed: int = 1000,
    out: str | Path = "suite",
    progress: bool = True,
    max_steps: int | None = None,
) -> dict[str, Any]:
    """Score ``agents`` (default :data:`DEFAULT_AGENTS`) and write the suite table to ``out``; returns its JSON."""
    from dataset_tools.atari import game_spec

    names = find_agents(list(agents or DEFAULT_AGENTS))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    games: dict[str, dict[str, Any]] = {}
    for name in names:
        result = evaluate_agent(name, None, episodes, seed=seed, progress=progress, max_steps=max_steps)
        game = str(result["game"])
        row = games.setdefault(game, {"game": game, "agents": [], "anchors": dict(game_spec(game).anchors)})
        row["agents"].append({"agent": name, "mean": result["mean"], "scores": result["scores"]})
    for row in games.values():
        scores = [s for a in row["agents"] for s in a["scores"]]
        row["mean"] = statistics.fmean(scores)
        row["std_of_agent_means"] = statistics.pstdev([a["mean"] for a in row["agents"]])
        row["human_normalised"] = normalised(row["mean"], row["anchors"])
    data = {
        "protocol": {"episodes": episodes, "first_episode_seed": seed, "max_steps": max_steps},
        "games": sorted(games.values(), key=lambda r: r["game"]),
    }
    (out / "suite.json").write_text(json.dumps(data, indent=1))
    (out / "suite.md").write_text(markdown(data))
    plot(data, out / "suite.png")
    return data


def _fmt(value: float | None, spec: str = "+.1f") -> str:
    return "-" if value is None else format(value, spec)


def markdown(data: dict[str, Any]) -> str:
    """The suite table: one row per game."""
    p = data["protocol"]
    note = "" if p["max_steps"] is None else f"; games cut at {p['max_steps']} steps: not the protocol's scores"
    lines = [
        f"Real scores of dream agents, {p['episodes']} {'full ' if p['max_steps'] is None else ''}games each "
        f"(episode seeds {p['first_episode_seed']}.., "
        f"sticky actions 0.25{note}); human-normalised: (score - random) / (human - random).",
        "",
        "| game | agents (mean of each) | mean | human-normalised | random | human | SimPLe | DIAMOND |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in data["games"]:
        a = row["anchors"]
        each = ", ".join(f"{Path(x['agent']).name} {x['mean']:+.1f}" for x in row["agents"])
        lines.append(
            f"| {row['game']} | {each} | {row['mean']:+.1f} | {_fmt(row['human_normalised'], '.2f')} | "
            + " | ".join(_fmt(a.get(k)) for k in ("random", "human", "SimPLe", "DIAMOND"))
            + " |"
        )
    return "\n".join(lines) + "\n"


def plot(data: dict[str, Any], path: Path) -> None:
    """Bars of the human-normalised score per game, SimPLe's and DIAMOND's as marks beside them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in data["games"] if r["human_normalised"] is not None]
    fig, ax = plt.subplots(figsize=(3.4 + 1.2 * max(len(rows), 1), 3.6))
    xs = range(len(rows))
    ax.bar(xs, [r["human_normalised"] for r in rows], width=0.5, color="tab:blue", label="dream agents (mean)")
    for name, marker in (("SimPLe", "o"), ("DIAMOND", "^")):
        pts = [(i, normalised(r["anchors"][name], r["anchors"])) for i, r in enumerate(rows) if name in r["anchors"]]
        if pts:
            ax.scatter([i for i, _ in pts], [v for _, v in pts], marker=marker, color="black", label=name, zorder=3)
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xticks(list(xs), [r["game"] for r in rows])
    ax.set_ylabel("human-normalised score")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
