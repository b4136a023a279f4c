"""Figures and the Markdown/HTML report of the adversarial stage (the HTML embeds its images)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np
import pandas as pd

from transferlab.adversarial.sweep import Replication, Sweep


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def sweep_table(sweep: Sweep) -> pd.DataFrame:
    return pd.DataFrame([row.__dict__ for row in sweep.rows])


def plot_sweep(table: pd.DataFrame, path: Path) -> None:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot(table["epsilon"], table["robust_accuracy"], marker="o", label="robust accuracy (untargeted PGD)")
    axis.plot(table["epsilon"], table["targeted_success"], marker="s", label="targeted success rate")
    axis.set(xlabel="epsilon (L-inf, pixels out of 255)", ylabel="rate", ylim=(-0.02, 1.02),
             title="robustness vs. perturbation budget")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_robust_vs_standard(table: pd.DataFrame, standard: str, path: Path) -> None:
    """Robust accuracy and targeted success per epsilon, solid for the pipeline's model, dashed for the standard."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6.5, 4))
    for column, marker in (("robust_accuracy", "o"), ("targeted_success", "s")):
        line, = axis.plot(table["epsilon"], table[column], marker=marker, label=f"{column}, adversarially fine-tuned")
        axis.plot(table["epsilon"], table[f"{column}_standard"], marker=marker, linestyle="--", color=line.get_color(),
                  label=f"{column}, {standard}")
    axis.set(xlabel="epsilon (L-inf, pixels out of 255)", ylabel="rate", ylim=(-0.02, 1.02),
             title="adversarially fine-tuned vs standard")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _magnified(delta: np.ndarray) -> np.ndarray:
    scale = max(float(np.abs(delta).max()), 1e-6)
    return np.clip(0.5 + 0.5 * delta / scale, 0, 1)


def plot_attack_grid(originals: np.ndarray, adversarials: np.ndarray, before: np.ndarray, after: np.ndarray,
                     names: list[str], title: str, path: Path) -> None:
    """Rows of original | perturbation (magnified) | adversarial, with labels and confidences."""
    plt = _pyplot()
    rows = max(1, len(originals))
    figure, axes = plt.subplots(rows, 3, figsize=(9, 3.1 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for row, (original, adversarial, p0, p1) in enumerate(zip(originals, adversarials, before, after)):
        delta = adversarial - original
        axes[row, 0].imshow(original.astype(np.uint8))
        axes[row, 0].set_title(f"{names[p0.argmax()]} {p0.max():.3f}", fontsize=9)
        axes[row, 1].imshow(_magnified(delta))
        axes[row, 1].set_title(f"perturbation, max |d| = {np.abs(delta).max():.1f}/255", fontsize=9)
        axes[row, 2].imshow(np.clip(adversarial, 0, 255).astype(np.uint8))
        axes[row, 2].set_title(f"{names[p1.argmax()]} {p1.max():.3f}", fontsize=9)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def plot_gradcam_pairs(befores: np.ndarray, afters: np.ndarray, before: np.ndarray, after: np.ndarray,
                       names: list[str], labels: list[str], path: Path) -> None:
    """Rows of Grad-CAM overlays: before the attack | after it, each of the class the model predicts there."""
    plt = _pyplot()
    rows = max(1, len(befores))
    figure, axes = plt.subplots(rows, 2, figsize=(6, 3.1 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for row, (first, second, p0, p1, label) in enumerate(zip(befores, afters, before, after, labels)):
        axes[row, 0].imshow(first)
        axes[row, 0].set_title(f"{label} before: {names[p0.argmax()]} {p0.max():.3f}", fontsize=8)
        axes[row, 1].imshow(second)
        axes[row, 1].set_title(f"after: {names[p1.argmax()]} {p1.max():.3f}", fontsize=8)
    figure.suptitle("Grad-CAM of the predicted class, before | after the attack", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def plot_ideal(runs: dict[str, "object"], path: Path) -> None:
    """Each run's snapshots in a row (label -> IdealImage)."""
    plt = _pyplot()
    columns = max(len(run.snapshots) for run in runs.values())
    figure, axes = plt.subplots(len(runs), columns, figsize=(2.6 * columns, 2.9 * len(runs)), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for row, (label, run) in enumerate(runs.items()):
        for column, (step, image) in enumerate(run.snapshots):
            axes[row, column].imshow(image)
            axes[row, column].set_title(f"{label}\nstep {step}", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def replication_lines(replication: Replication, names: list[str], top: int = 3) -> list[str]:
    def ranked(row):
        order = np.argsort(-row)[:top]
        return ", ".join(f"{names[i]} {row[i]:.3f}" for i in order)

    return [f"before: {ranked(replication.before)}", f"after: {ranked(replication.after)}",
            f"largest pixel change: {replication.linf:.1f}/255 (no budget)"]


# A report is a list of sections (title, blocks); a block is ("text", str), ("list", [str]),
# ("table", DataFrame) or ("image", alt text, path relative to the report).
Block = tuple


def to_markdown(sections: list[tuple[str, list[Block]]]) -> str:
    out = ["# Adversarial report"]
    for title, blocks in sections:
        out.append(f"## {title}")
        for kind, *content in blocks:
            if kind == "text":
                out.append(content[0])
            elif kind == "list":
                out.append("\n".join(f"- {line}" for line in content[0]))
            elif kind == "table":
                out.append(content[0].to_markdown(index=False, floatfmt=".4g"))
            else:
                out.append(f"![{content[0]}]({content[1]})")
    return "\n\n".join(out) + "\n"


def to_html(sections: list[tuple[str, list[Block]]], images_dir: Path) -> str:
    """A self-contained page: every image (found by file name in images_dir) is embedded as base64."""
    parts = []
    for title, blocks in sections:
        parts.append(f"<h2>{html.escape(title)}</h2>")
        for kind, *content in blocks:
            if kind == "text":
                parts.append(f"<p>{html.escape(content[0])}</p>")
            elif kind == "list":
                parts.append("<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in content[0]) + "</ul>")
            elif kind == "table":
                parts.append(content[0].to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0))
            else:
                data = base64.b64encode((images_dir / Path(content[1]).name).read_bytes()).decode()
                parts.append(f'<figure><img alt="{html.escape(content[0])}" src="data:image/png;base64,{data}">'
                             f"<figcaption>{html.escape(content[0])}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto;padding:0 1em}img{max-width:100%}"
             "table{border-collapse:collapse;font-size:90%;display:block;overflow-x:auto}"
             "td,th{border:1px solid #ccc;padding:3px 6px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Adversarial report</title><style>{style}"
            f"</style></head><body><h1>Adversarial report</h1>{''.join(parts)}</body></html>\n")
