"""``create-dataset``: collect ALE rollouts and add SPACE-Time motion targets.

Steps run in this order, each only when asked for: collect (``--episodes`` / ``--frames``),
root background (``--rootmedian``), motion and boxes (``--motion`` / ``--root`` / ``--plot_bb``),
i.i.d. frame set (``--random``).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from dataset_tools.collect import CollectConfig, collect
from dataset_tools.dataset import DatasetDir
from dataset_tools.episode import DatasetError
from dataset_tools.games import EnvSettings, UnknownGameError, resolve_game
from dataset_tools.postprocess import MotionConfig, compute_motion, compute_root, write_iid

log = logging.getLogger("create-dataset")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="create-dataset",
        description="Collect rollouts of an ALE game into an episode dataset (and SPACE-Time motion targets).",
        epilog="Example: create-dataset -g Pong -f train --frames 2000 --workers 2 --agent scripted; "
        "then --rootmedian; then --root --plot_bb.",
    )
    p.add_argument("-g", "--game", default="Pong", help="ALE game, e.g. Pong, Breakout, SpaceInvaders (default Pong)")
    p.add_argument("-f", "--folder", default="train", help="split folder name under data/<Game>/ (default train)")
    p.add_argument("--out", type=Path, default=None, help="dataset directory (default data/<Game>/<folder>)")
    count = p.add_mutually_exclusive_group()
    count.add_argument("--episodes", type=int, default=None, help="number of new episodes to collect")
    count.add_argument("--frames", type=int, default=None, help="number of new agent steps to collect")
    p.add_argument(
        "--agent",
        default="random",
        help="random | random:K (each random action held K steps) | scripted (Pong) | PATH.zip (Stable-Baselines3)",
    )
    p.add_argument(
        "--trust-pickle",
        action="store_true",
        help="let --agent be a Stable-Baselines3 .zip: loading one unpickles it, which runs any code it holds",
    )
    p.add_argument(
        "--noise",
        type=float,
        default=None,
        help="random-action probability of the scripted agent (default 0.1) or a dream agent (default 0)",
    )
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--seed", type=int, default=0, help="base seed; episode i uses a seed derived from (seed, i)")
    env = p.add_argument_group("environment (defaults: ALE v5)")
    env.add_argument("--frameskip", type=int, default=4)
    env.add_argument("--sticky", type=float, default=0.25, help="repeat_action_probability")
    env.add_argument("--full-action-space", action="store_true")
    env.add_argument("--max-episode-steps", type=int, default=None)
    st = p.add_argument_group("SPACE-Time options")
    st.add_argument(
        "--rootmedian", "--root-median", action="store_true", help="write mode.png / median.png from the frames so far"
    )
    st.add_argument(
        "--root",
        action="store_true",
        help="motion against the dataset's mode/median image instead of each episode's own",
    )
    st.add_argument("--motion", choices=["mode", "median", "flow"], default=None, help="motion method (default mode)")
    st.add_argument("--plot_bb", "--plot-bb", action="store_true", help="write frames with boxes drawn to DIR/plot_bb/")
    st.add_argument("--grid", type=int, default=16, help="G of the G x G z_pres / z_where grid (default 16)")
    st.add_argument("--threshold", type=int, default=None, help="motion threshold (default: the method's)")
    st.add_argument(
        "--random", action="store_true", help="also write an i.i.d. frame set sampled across episodes (DIR/iid/)"
    )
    st.add_argument("--iid-frames", type=int, default=2000, help="frames in the i.i.d. set (default 2000)")
    st.add_argument(
        "--background-frames", type=int, default=2000, help="frames sampled for --rootmedian (default 2000)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def run(args: argparse.Namespace) -> DatasetDir:
    """Everything ``create-dataset`` does, callable from Python with parsed arguments."""
    game = resolve_game(args.game)
    out = args.out if args.out is not None else Path("data") / game / args.folder
    ds = DatasetDir(out)
    progress = not args.no_progress
    wants_motion = args.motion is not None or args.root or args.plot_bb
    if args.grid < 1:
        raise ValueError(f"--grid must be at least 1, got {args.grid}")
    if args.episodes is None and args.frames is None:
        if not (args.rootmedian or wants_motion or args.random):
            raise ValueError(
                "nothing to do: give --episodes N or --frames N (or --rootmedian / --root / --random on an existing dataset)"
            )
        if not ds.exists():
            raise DatasetError(
                f"{out}: no dataset there yet; collect first, e.g. create-dataset -g {game} --frames 2000"
            )
        if ds.read_manifest()["game"] != game:
            raise DatasetError(f"{out}: holds {ds.read_manifest()['game']}, not {game}")
    else:
        settings = EnvSettings(
            game=game,
            frameskip=args.frameskip,
            repeat_action_probability=args.sticky,
            full_action_space=args.full_action_space,
            max_episode_steps=args.max_episode_steps,
        )
        from agents import make_agent  # the command line sits above the packages: it picks the agents

        cfg = CollectConfig(
            out=out,
            env=settings,
            episodes=args.episodes,
            frames=args.frames,
            agent=args.agent,
            make_agent=make_agent,
            agent_noise=args.noise,
            trust_pickle=args.trust_pickle,
            workers=args.workers,
            seed=args.seed,
            command=shlex.join(["create-dataset", *sys.argv[1:]]),
        )
        result = collect(cfg, progress=progress)
        counts = ds.counts()
        state = "interrupted after" if result.interrupted else "collected"
        log.info(
            "%s %d episodes, %d steps in %.1fs (%.0f steps/s); %s now holds %d episodes, %d steps",
            state,
            len(result.episodes),
            result.steps,
            result.seconds,
            result.steps_per_second,
            out,
            counts["episodes"],
            counts["steps"],
        )
        if result.interrupted:
            raise KeyboardInterrupt
    if args.rootmedian:
        compute_root(ds, max_frames=args.background_frames, seed=args.seed)
    if wants_motion:
        mcfg = MotionConfig(
            method=args.motion or "mode", root=args.root, grid=args.grid, threshold=args.threshold, plot_bb=args.plot_bb
        )
        n = compute_motion(ds, mcfg, workers=args.workers, progress=progress)
        log.info(
            "motion (%s%s): %d boxes%s",
            mcfg.method,
            ", root background" if mcfg.root else "",
            n,
            f"; box images in {out / 'plot_bb'}" if args.plot_bb else "",
        )
    if args.random:
        if args.iid_frames < 1:
            raise ValueError(f"--iid-frames must be at least 1, got {args.iid_frames}")
        path = write_iid(ds, args.iid_frames, seed=args.seed)
        log.info("i.i.d. frame set in %s", path)
    return ds


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        run(args)
    except KeyboardInterrupt:
        print("create-dataset: interrupted; every finished episode is kept", file=sys.stderr)
        return 130
    except (UnknownGameError, ValueError, DatasetError, FileNotFoundError, RuntimeError) as err:
        print(f"create-dataset: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
