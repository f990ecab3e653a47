"""The outputs of :func:`world_models.evaluation.compare.compare`: Markdown table, long-format CSV, JSON and plot."""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from world_models.evaluation.plot import _pyplot

log = logging.getLogger(__name__)

COPY_NAME = "copy last frame"
TABLE_STEPS = (1, 5, 10)
"""Predicted steps shown in the Markdown table (those within the horizon, plus the horizon)."""
CSV_COLUMNS = (
    "name", "model", "checkpoint_step", "step", "psnr_best", "psnr_avg", "psnr_worst", "ssim_best", "ssim_avg",
    "ssim_worst", "ball_err", "ball_found", "reward_acc", "term_acc", "params", "train_frames_per_s",
    "imagined_steps_per_s",
)  # fmt: skip


def _num(value: Any, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def table_steps(horizon: int) -> list[int]:
    return sorted({s for s in TABLE_STEPS if s <= horizon} | {horizon})


def markdown_table(result: dict[str, Any]) -> str:
    """Per model: params, train frames/s, imagined steps/s, reward-sign accuracy (on steps with a point
    scored in brackets), PSNR and SSIM avg at :func:`table_steps`, ball error at step 1 (share of
    RAM-visible balls found in brackets); last row the copy-last baseline; then one line of settings."""
    steps = table_steps(result["settings"]["horizon"])
    at = "/".join(str(s) for s in steps)
    head = [
        "model",
        "params",
        "train frames/s",
        "imagined steps/s",
        "reward acc (scored)",
        f"PSNR avg @{at}",
        f"SSIM avg @{at}",
        "ball err @1 (found)",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cells(per_step: list[dict[str, Any]], key: str, spec: str) -> str:
        return " / ".join(_num(per_step[s - 1].get(key), spec) for s in steps)

    for m in result["models"]:
        o, first = m["overall"], m["per_step"][0]
        row = [
            f"{m['name']} ({m['model']}, step {m['checkpoint_step']})",
            f"{m['params']:,}",
            _num(m["train_frames_per_s"], ",.0f"),
            _num(m["imagined_steps_per_s"], ",.0f"),
            f"{_num(o.get('reward_acc'), '.3f')} ({_num(o.get('reward_nonzero_acc'), '.2f')})",
            cells(m["per_step"], "psnr_avg", ".2f"),
            cells(m["per_step"], "ssim_avg", ".3f"),
            f"{_num(first.get('ball_err'), '.1f')} ({_num(first.get('ball_found'), '.2f')})",
        ]
        lines.append("| " + " | ".join(row) + " |")
    copy, c1 = result["copy_last"], result["copy_last"][0]
    row = [
        COPY_NAME,
        "-",
        "-",
        "-",
        "-",
        cells(copy, "psnr", ".2f"),
        cells(copy, "ssim", ".3f"),
        f"{_num(c1.get('ball_err'), '.1f')} ({_num(c1.get('ball_found'), '.2f')})",
    ]
    lines.append("| " + " | ".join(row) + " |")
    s, m0 = result["settings"], result["models"][0]
    scored = m0["overall"].get("reward_nonzero_count", 0)
    lines.append("")
    lines.append(
        f"{m0['windows']} held-out windows of `{s['data']}` (val_fraction {s['val_fraction']:g}), {s['horizon']}"
        f" open-loop steps, {s['n_samples']} samples per window for stochastic models, seed {s['seed']};"
        f" {scored} predicted step(s) with a point scored; imagined steps/s: {result['speed']['envs']} envs x"
        f" {result['speed']['steps']} steps on {result['device']}; ball error in raw 210 x 160 pixels."
    )
    return "\n".join(lines)


def _csv_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for m in result["models"]:
        for r in m["per_step"]:
            rows.append({k: m.get(k, r.get(k)) for k in CSV_COLUMNS if k != "step"} | {"step": r["step"]})
    for r in result["copy_last"]:
        rows.append(
            {
                "name": COPY_NAME,
                "model": "copy_last",
                "step": r["step"],
                "psnr_best": r["psnr"],
                "psnr_avg": r["psnr"],
                "psnr_worst": r["psnr"],
                "ssim_best": r["ssim"],
                "ssim_avg": r["ssim"],
                "ssim_worst": r["ssim"],
                "ball_err": r["ball_err"],
                "ball_found": r["ball_found"],
            }
        )
    return rows


def plot_compare(result: dict[str, Any], out_png: str | Path) -> None:
    """PSNR avg, SSIM avg and ball error against predicted step, one line per model, copy-last dashed."""
    plt = _pyplot()
    panels = [("psnr_avg", "psnr", "PSNR avg (dB)"), ("ssim_avg", "ssim", "SSIM avg")]
    if any(r.get("ball_err") is not None for m in result["models"] for r in m["per_step"]):
        panels.append(("ball_err", "ball_err", "ball centre error (raw px)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)

    def col(rows: list[dict[str, Any]], key: str) -> np.ndarray:
        return np.array([np.nan if r.get(key) is None else r[key] for r in rows], dtype=float)

    for ax, (key, copy_key, label) in zip(axes[0], panels, strict=True):
        for m in result["models"]:
            ax.plot(col(m["per_step"], "step"), col(m["per_step"], key), marker="o", label=m["name"])
        copy = result["copy_last"]
        ax.plot(col(copy, "step"), col(copy, copy_key), "k--", marker="s", label=COPY_NAME)
        ax.set_xlabel("predicted step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)


def write_report(out: Path, result: dict[str, Any]) -> None:
    """``compare.json``, ``compare.csv`` (one row per model and predicted step, then the copy-last rows),
    ``compare.md`` (:func:`markdown_table`) and ``compare.png`` (:func:`plot_compare`) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(result, indent=1))
    with open(out / "compare.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in _csv_rows(result):
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in CSV_COLUMNS})
    (out / "compare.md").write_text(markdown_table(result) + "\n")
    plot_compare(result, out / "compare.png")
    log.info("wrote compare.json, compare.csv, compare.md and compare.png to %s", out)
