"""Training throughput of each world model (frames/s through forward + backward + Adam).

    python benchmarks/train_speed.py --data data/pong_wm --steps 20

Times ``steps`` optimizer steps (after 3 warm-up steps) of each model config on real batches
(batch 16, n_past 2 + n_future 8 frames, 64 x 64 RGB) on this machine's default device.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from dataset_tools.sequences import SequenceDataset
from world_models import build_model, model_class

CONFIGS = {
    "rnn_deconv nf=16": ("rnn_deconv", {"nf": 16, "change_weight": 20.0}),
    "svg_lp nf=16 composite": ("svg_lp", {"nf": 16, "change_weight": 20.0, "last_frame_skip": True, "composite": True}),
    "svg_lp nf=16 context skips": ("svg_lp", {"nf": 16, "change_weight": 20.0}),
    "svg_lp v1 (2 frames, rollouts)": (  # LearnedPong-v1's last stage
        "svg_lp",
        {
            "nf": 16,
            "change_weight": 20.0,
            "last_frame_skip": True,
            "composite": True,
            "encoder_frames": 2,
            "rollout_training": True,
        },
    ),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/pong_wm")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = SequenceDataset(args.data, seq_len=10, split="train")
    batches = [b.to(device) for _, b in zip(range(4), data.loader(args.batch_size, seed=0), strict=False)]
    print(
        f"device {device}, {platform.machine()} {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, batch {args.batch_size} x 10 frames"
    )
    print(f"{'model':<32}{'params':>10}{'frames/s':>10}{'s/step':>9}")
    for label, (name, overrides) in CONFIGS.items():
        cfg = model_class(name).Config(**overrides)
        model = build_model(name, cfg, (3, 64, 64), 6).to(device)
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        for i in range(args.steps + 3):
            if i == 3:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
            loss, _ = model.loss(batches[i % len(batches)])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        sec = (time.perf_counter() - t0) / args.steps
        params = sum(q.numel() for q in model.parameters())
        print(f"{label:<32}{params:>10,}{args.batch_size * 10 / sec:>10.0f}{sec:>9.3f}")


if __name__ == "__main__":
    main()
