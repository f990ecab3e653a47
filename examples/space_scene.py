"""The objects of a real Pong frame, read by the shipped SPACE-Time extractor.

    python examples/space_scene.py --out scene.png

Plays a few random steps of real Pong, runs the extractor on the frame, prints the scene
(``{label: [(x, y), ...]}`` in (-1, 1)) with the RAM's truth beside it, and draws the boxes.
"""

from __future__ import annotations

import argparse

import ale_py
import gymnasium as gym
import imageio.v3 as iio
import numpy as np
import torch

from dataset_tools.motion import draw_boxes
from dataset_tools.preprocess import Preprocess
from dataset_tools.ram_truth import ram_objects
from world_models import load_model
from world_models.space import PONG_CHECKPOINT
from world_models.space.classifier import load_classifier


def main(argv: list[str] | None = None) -> dict[str, list[tuple[float, float]]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="scene.png", help="PNG with the found objects boxed")
    parser.add_argument("--steps", type=int, default=80, help="random steps played before the frame is read")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    gym.register_envs(ale_py)
    env = gym.make("ALE/Pong-v5")
    frame, _ = env.reset(seed=args.seed)
    env.action_space.seed(args.seed)
    for _ in range(args.steps):
        frame, *_ = env.step(env.action_space.sample())
    ram = env.unwrapped.ale.getRAM()
    env.close()

    model, config = load_model(PONG_CHECKPOINT)  # (3, 128, 128) RGB frames of the play field
    classifier = load_classifier(PONG_CHECKPOINT / "z_what-classifier_4.json")  # predicts label names
    pre = Preprocess.from_dict(config.preprocess)
    image = pre(frame)  # (210, 160, 3) -> (128, 128, 3) uint8
    x = torch.from_numpy(image).permute(2, 0, 1).float() / 255.0  # (3, 128, 128) in [0, 1]
    scene = model.scene_description(x, z_classifier=classifier)
    truth = {name: box[0] for name, box in ram_objects("Pong", ram).items() if box[0, 0] > 0}  # (1, 5) each

    print("SPACE-Time scene (centres in (-1, 1)):")
    for label, centres in sorted(scene.items()):
        print(f"  {label:<7}" + "  ".join(f"({cx:+.3f}, {cy:+.3f})" for cx, cy in centres))
    print("RAM truth (raw 210 x 160 boxes [visible, x, y, w, h]):")
    for name, box in truth.items():
        print(f"  {name:<7}{box.tolist()}")

    inference = model.infer(x[None])
    present = (inference.z_pres[0] > 0.5).numpy()
    boxes = inference.boxes[0].numpy()[present]  # (K, 4) [x, y, w, h] in the 128 x 128 frame
    labels = list(classifier.predict(inference.z_what[0].numpy()[present])) if present.any() else []
    big = np.kron(image, np.ones((4, 4, 1), dtype=np.uint8))  # 512 x 512 for legible labels
    iio.imwrite(args.out, draw_boxes(big, boxes * 4, color=(255, 64, 255), labels=[str(s) for s in labels]))
    print(f"wrote {args.out}")
    return scene


if __name__ == "__main__":
    main()
