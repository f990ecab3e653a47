"""``learned-envs play``, ``dream``, ``evaluate-agent``, ``fidelity``, ``loop``, ``suite`` and ``quickstart``: parse arguments,
call the library."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from agents.algos import ALGOS
from agents.dream import DreamConfig, train_in_dream
from agents.evaluate import evaluate_agent
from agents.loop import LoopConfig
from world_models.config import apply_overrides, parse_pairs

TRUST_HELP = "let an older agent's agent.zip load: loading one unpickles it, which runs any code its author put there"


def _threads() -> None:
    import logging

    from world_models.base import pick_threads

    logging.getLogger("learned_envs").info(pick_threads()[1])


def _dream(args: argparse.Namespace) -> int:
    _threads()
    cfg = DreamConfig(env=args.env, algo=args.algo, steps=args.steps, n_envs=args.n_envs, seed=args.seed)
    (cfg,) = apply_overrides([cfg], parse_pairs(args.overrides))
    try:
        path = train_in_dream(cfg, args.out, progress=args.progress)
    except KeyboardInterrupt:
        print(f"interrupted: the agent so far is in {args.out}", file=sys.stderr)
        return 130
    print(f"agent: {path}")
    return 0


def _evaluate_agent(args: argparse.Namespace) -> int:
    result = evaluate_agent(
        args.agent,
        args.game,
        args.episodes,
        args.seed,
        gif=args.gif,
        out=args.json,
        progress=args.progress,
        max_steps=args.max_steps,
        trust_pickle=args.trust_pickle,
    )
    print(json.dumps({k: result[k] for k in ("game", "episodes", "mean", "std", "scores")}))
    return 0


def _quickstart(args: argparse.Namespace) -> int:
    _threads()
    from agents.report import quickstart

    report = quickstart(
        args.out,
        args.env,
        args.steps,
        args.episodes,
        args.seed,
        progress=args.progress,
        checks=args.checks,
        n_envs=args.n_envs,
    )
    print(report.read_text())
    print(f"report: {report}")
    return 0


def _loop(args: argparse.Namespace) -> int:
    _threads()
    from agents.loop import LoopConfig, format_final, format_table, format_times, read_final, run_loop

    cfg = LoopConfig(
        game=args.game,
        real_steps=args.real_steps,
        iterations=args.iterations,
        seed=args.seed,
        frames_only=args.frames_only,
    )
    (cfg,) = apply_overrides([cfg], parse_pairs(args.overrides))
    rows = run_loop(cfg, args.out, progress=args.progress)
    print(format_table(rows))
    final = read_final(args.out)
    if final:
        print(format_final(final))
    times = format_times(json.loads((Path(args.out) / "loop.json").read_text()))
    if times:
        print(times)
    return 0


def _fidelity(args: argparse.Namespace) -> int:
    _threads()
    from agents.fidelity import FidelityConfig, fidelity, main_json, markdown

    cfg = FidelityConfig(
        checkpoint=args.checkpoint,
        agent=args.agent,
        envs=args.envs,
        steps=args.steps,
        real_episodes=args.real_episodes,
        seed=args.seed,
        samples=args.samples,
        trust_pickle=args.trust_pickle,
    )
    result = fidelity(cfg, args.out, progress=args.progress)
    print(markdown(result))
    print(f"wrote {args.out / 'fidelity.json'}, {args.out / 'fidelity.md'}, {args.out / 'fidelity.png'}")
    print(main_json(result))
    return 0


def _suite(args: argparse.Namespace) -> int:
    _threads()
    from agents.suite import suite

    suite(args.agents, args.episodes, args.seed, args.out, progress=args.progress, max_steps=args.max_steps)
    print((args.out / "suite.md").read_text())
    print(f"wrote {args.out / 'suite.md'}, {args.out / 'suite.json'}, {args.out / 'suite.png'}")
    return 0


def _play(args: argparse.Namespace) -> int:
    if args.serve:
        return _serve(args)
    from agents import make_agent
    from learned_envs.play import play

    try:
        play(
            args.checkpoint,
            args.out,
            steps=args.steps,
            agent=args.agent,
            seed=args.seed,
            trust_pickle=args.trust_pickle,
            make_agent=make_agent,
        )
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"learned-envs: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from learned_envs.serve import serve

    try:
        serve(args.checkpoint, host=args.host, port=args.port, fps=args.fps, seed=args.seed)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"learned-envs: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the port is taken, or the host is not this machine's
        print(f"learned-envs: error: cannot serve on {args.host}:{args.port}: {err.strerror or err}", file=sys.stderr)
        return 2
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``play``, ``dream``, ``evaluate-agent``, ``fidelity``, ``loop`` and ``quickstart`` to the ``learned-envs``
    command."""
    p = sub.add_parser(
        "play",
        description="Write the real game beside the dream, driven by the same actions, as a GIF or MP4; or, with "
        "--serve, play the dream yourself in the browser with the real game beside it.",
    )
    p.add_argument(
        "--checkpoint", required=True, help="learned-env id (LearnedPongObjects-v1, ...) or checkpoint / run directory"
    )
    p.add_argument("--out", type=Path, default=Path("play.gif"), help=".gif or .mp4 (default play.gif)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--agent", default="random", help="random | scripted | an agent of learned-envs dream")
    p.add_argument(
        "--trust-pickle",
        action="store_true",
        help="let --agent be a Stable-Baselines3 .zip: loading one unpickles it, which runs any code it holds",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--serve",
        action="store_true",
        help="a local web page where you play with the keyboard (--out, --steps and --agent are not used)",
    )
    p.add_argument("--host", default="127.0.0.1", help="with --serve: address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="with --serve: port (default 8000; 0 picks a free one)")
    p.add_argument("--fps", type=int, default=15, help="with --serve: steps per second while playing (default 15)")
    p.set_defaults(func=_play)
    d = sub.add_parser(
        "dream",
        description="Train an agent in the dream. Trailing key=value pairs set any of: "
        + ", ".join(f.name for f in fields(DreamConfig)),
    )
    d.add_argument("--env", default="LearnedPong-v2", help="learned-env id or checkpoint path (default LearnedPong-v2)")
    d.add_argument("--algo", default="ppo", choices=tuple(ALGOS), help="Stable-Baselines3 algorithm (default ppo)")
    d.add_argument("--steps", type=int, default=DreamConfig.steps, help="dream steps in total")
    d.add_argument("--n-envs", type=int, default=DreamConfig.n_envs, help="parallel dream envs")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--out", type=Path, default=Path("runs/agent"), help="output directory (default runs/agent)")
    d.add_argument("--no-progress", dest="progress", action="store_false")
    d.add_argument("overrides", nargs="*", metavar="key=value")
    d.set_defaults(func=_dream)
    e = sub.add_parser("evaluate-agent")
    e.add_argument(
        "--agent",
        required=True,
        help="an agent of learned-envs dream (its directory or agent.pt), or a shipped one: PongDreamPPO-v2 (frames-only dream), -v1, -v0",
    )
    e.add_argument("--game", default=None, help="check the agent plays this game")
    e.add_argument("--episodes", type=int, default=10)
    e.add_argument("--seed", type=int, default=0, help="episode i is seeded seed + i")
    e.add_argument("--gif", type=Path, default=None, help="write the first episode as a GIF")
    e.add_argument("--json", type=Path, default=None, help="write the scores as JSON")
    e.add_argument("--max-steps", type=int, default=None, help="cut episodes short (a quick check, not the protocol)")
    e.add_argument("--trust-pickle", action="store_true", help=TRUST_HELP)
    e.add_argument("--no-progress", dest="progress", action="store_false")
    e.set_defaults(func=_evaluate_agent)
    f = sub.add_parser(
        "fidelity",
        description="Per 1,000 steps, dream next to real: points lost and won, returns, rally length, the ball's "
        "speed, and the one-step turn rates near the paddle (Pong). Writes fidelity.json, .md and .png.",
    )
    f.add_argument("--checkpoint", required=True, help="learned-env id or checkpoint directory")
    f.add_argument("--agent", default=None, help="agent from learned-envs dream (or shipped); default: random actions")
    f.add_argument("--envs", type=int, default=64, help="dream games side by side (default 64)")
    f.add_argument("--steps", type=int, default=1000, help="steps of each dream game (default 1,000)")
    f.add_argument("--real-episodes", type=int, default=3, help="full real games (default 3)")
    f.add_argument("--trust-pickle", action="store_true", help=TRUST_HELP)
    f.add_argument(
        "--samples", type=int, default=16, help="replays of each real arrival, in the dream and in the real game"
    )
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--out", type=Path, default=Path("fidelity"), help="output directory (default fidelity/)")
    f.add_argument("--no-progress", dest="progress", action="store_false")
    f.set_defaults(func=_fidelity)
    st = sub.add_parser(
        "suite",
        description="One table of dream agents' real scores per game (Atari 100k protocol: full games, sticky "
        "actions), human-normalised, beside random, human, SimPLe and DIAMOND; writes suite.md, .json and .png.",
    )
    st.add_argument(
        "--agents",
        nargs="+",
        default=None,
        help="agents (directories, agent.pt, shipped names) or directories holding them (every agent below counts, "
        "a loop's iteration agents too); agents of one game are its seeds (default: the shipped PongDreamPPO-v2)",
    )
    st.add_argument("--episodes", type=int, default=10, help="full real games per agent (default 10)")
    st.add_argument("--seed", type=int, default=1000, help="episode i is seeded seed + i (default 1000)")
    st.add_argument("--max-steps", type=int, default=None, help="cut games short (a quick check, not the protocol)")
    st.add_argument("--out", type=Path, default=Path("suite"), help="output directory (default suite/)")
    st.add_argument("--no-progress", dest="progress", action="store_false")
    st.set_defaults(func=_suite)
    q = sub.add_parser("quickstart")
    q.add_argument("--out", type=Path, default=Path("report"), help="report directory (default report/)")
    q.add_argument("--env", default="LearnedPong-v2", help="learned-env id or checkpoint path (default LearnedPong-v2)")
    q.add_argument("--steps", type=int, default=4_000_000, help="dream steps (default 4,000,000)")
    q.add_argument("--n-envs", type=int, default=256, help="parallel dream envs (default 256)")
    q.add_argument("--episodes", type=int, default=5, help="real episodes scored (default 5)")
    q.add_argument(
        "--checks",
        type=int,
        default=0,
        help="one-game real evaluations during training (default 0: the curve is the dream return)",
    )
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--no-progress", dest="progress", action="store_false")
    q.set_defaults(func=_quickstart)
    lp = sub.add_parser(
        "loop",
        description="Resumable: run the same command again to continue. Trailing key=value pairs set any of: "
        + ", ".join(f.name for f in fields(LoopConfig)),
    )
    lp.add_argument("-g", "--game", default="Pong")
    lp.add_argument("--real-steps", type=int, default=100_000, help="real agent steps over the whole loop")
    lp.add_argument("--iterations", type=int, default=4)
    lp.add_argument(
        "--frames-only",
        action="store_true",
        help="the frames-only protocol: the world model is slot_dynamics over an object extractor trained on the "
        "loop's own frames; nothing but scoring reads the RAM",
    )
    lp.add_argument("--seed", type=int, default=0)
    lp.add_argument("--out", type=Path, default=Path("runs/loop"))
    lp.add_argument("--no-progress", dest="progress", action="store_false")
    lp.add_argument("overrides", nargs="*", metavar="key=value")
    lp.set_defaults(func=_loop)
