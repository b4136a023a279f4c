"""The adversarial report, composed: the epsilon sweep, the seed lesson's unbounded demo and ideal-class images on
the pipeline's model, and optionally the same on a full ImageNet classifier. Figures go into `images_dir`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from transferlab.adversarial.attacks import class_mask, ideal_image, ideal_images, probabilities
from transferlab.adversarial.rendering import (plot_attack_grid, plot_gradcam_pairs, plot_ideal, plot_robust_vs_standard,
                                               plot_sweep, replication_lines, sweep_table)
from transferlab.adversarial.targets import target_classes
from transferlab.adversarial.sweep import (Sweep, epsilon_sweep, replicate_seed_attack, side_by_side,
                                           top_k, transfer_rates)
from transferlab.core.errors import ParamsError
from transferlab.core.params import AdversarialParams
from transferlab.data.images import UndecodableImage, decode_rgb, pixel_limit, resize
from transferlab.data.prepared import first_images
from transferlab.modeling.assembly import imagenet_classifier
from transferlab.modeling.gradcam import gradcam, overlay
from transferlab.modeling.outputs import logits_function
from transferlab.core.progress import phase

SPLIT = "test"


@dataclass
class Reference:
    """A second model measured beside the pipeline's, with the name the report gives it."""

    name: str
    model: Any


@dataclass
class Report:
    sections: list = field(default_factory=list)  # (title, blocks) for rendering.to_markdown / to_html
    metrics: dict = field(default_factory=dict)


def build_report(model, classes: list[dict], prepared: Path, cfg: AdversarialParams, seed: int, root: Path,
                 images_dir: Path, standard: Reference | None = None, others: list[Reference] = ()) -> Report:
    """The report on `model`; beside it, `standard` (a model without adversarial training) runs the same sweep,
    and each of `others` scores the images made against `model` (transfer)."""
    report = Report()
    names = [c["name"] for c in classes]
    images, labels = first_images(prepared, SPLIT, cfg.num_images)
    targets = target_classes(cfg.target, classes)
    sweep, dog = _own_model(report, model, names, images, labels, targets, cfg, seed, root, images_dir)
    beside = []  # right after the sweep they extend, before the demonstrations
    if standard is not None:
        beside.append(_robust_vs_standard(report, sweep, standard, images, labels, targets, cfg, seed, images_dir))
    if others:
        beside.append(_transfer(report, model, sweep, others, images, labels, targets))
    report.sections[1:1] = beside
    if cfg.imagenet.weights:
        _imagenet(report, dog, cfg, seed, root, images_dir)
    return report


def _own_model(report: Report, model, names: list[str], images: np.ndarray, labels: np.ndarray, targets: list[int],
               cfg: AdversarialParams, seed: int, root: Path, images_dir: Path) -> tuple[Sweep, np.ndarray]:
    forward = logits_function(model)
    sweep = epsilon_sweep(forward, images, labels, targets, cfg.epsilons, cfg.steps, cfg.step_factor, seed,
                          cfg.batch_size)
    table = sweep_table(sweep)
    plot_sweep(table, images_dir / "epsilon_sweep.png")
    largest = max(cfg.epsilons)
    shown = sweep.source_indices[:4]
    adversarial = sweep.examples[largest][:4]
    plot_attack_grid(images[shown], adversarial, probabilities(forward, images[shown]) if len(shown) else [],
                     probabilities(forward, adversarial) if len(shown) else [], names,
                     f"targeted PGD, epsilon {largest}/255, {cfg.steps} steps", images_dir / "pgd_examples.png")
    np.savez_compressed(images_dir / "adversarial_batch.npz", images=np.round(adversarial).astype(np.uint8),
                        originals=images[shown].astype(np.uint8), labels=labels[shown])
    size = images.shape[1]
    with phase(f"adversarial_report: the seed's unbounded attack ({cfg.replication_steps} steps)"):
        replication = replicate_seed_attack(forward, _replication_input(cfg, root, images, labels, targets, size),
                                            targets, cfg.replication_steps, cfg.replication_step_size)
    plot_attack_grid(replication.image[None], replication.adversarial[None], replication.before[None],
                     replication.after[None], names, f"unbounded, {cfg.replication_steps} steps",
                     images_dir / "replication.png")
    originals = np.concatenate([images[shown], replication.image[None]])
    attacked = np.concatenate([adversarial, replication.adversarial[None]])
    captions = [f"PGD {largest:g}/255" for _ in shown] + ["unbounded"]
    _gradcam_before_after(model, originals, attacked, forward, names, captions, images_dir / "gradcam_attack.png")
    mask = class_mask(len(names), targets)
    lambdas = (cfg.ideal_tv_weight, 0.0)
    runs = ideal_images(forward, size, mask, cfg.ideal_steps, cfg.ideal_learning_rate, lambdas,
                        cfg.ideal_snapshot_every, seed,
                        f"adversarial_report: ideal class images, lambda {lambdas} in one batch (steps of 10)")
    ideal = {f"lambda={lam}": run for lam, run in zip(lambdas, runs)}
    plot_ideal(ideal, images_dir / "ideal_class.png")
    target_names = ", ".join(names[t] for t in targets)
    report.metrics.update({
        "sweep": table.to_dict(orient="records"),
        "targeted_success_at_max_epsilon": float(table["targeted_success"].iloc[-1]),
        "replication": {"target_probability_before": float(replication.before[mask].sum()),
                        "target_probability_after": float(replication.after[mask].sum()), "linf": replication.linf},
        "ideal": {label: {"target_probability": run.probability, "total_variation": run.total_variation}
                  for label, run in ideal.items()}})
    report.sections += [
        ("Budgeted attacks (the pipeline's model)", [
            ("text", f"PGD under an L-inf budget (random start, {cfg.steps} steps of {cfg.step_factor}*epsilon/steps) "
                     f"on {len(images)} test images. Targeted: toward {target_names}, on the correctly classified "
                     f"images of other classes. An image counts as broken at epsilon when an attack within that "
                     f"budget (or a smaller one) fooled the model. Epsilon is in pixels out of 255."),
            ("table", table), ("image", "robust accuracy vs epsilon", "images/epsilon_sweep.png"),
            ("image", "original | perturbation | adversarial", "images/pgd_examples.png")]),
        ("Where the model looks, before and after the attack", [
            ("text", "Grad-CAM on the backbone's last convolutional block, of the class the model predicts: on the "
                     "PGD examples above and on the unbounded demonstration below. Red is where the evidence for "
                     "that class sits."),
            ("image", "Grad-CAM before | after the attack", "images/gradcam_attack.png")]),
        ("The seed lesson's demonstration (no budget)", [
            ("text", f"Plain gradient steps on log p({target_names}), step {cfg.replication_step_size}, "
                     f"{cfg.replication_steps} steps, no epsilon and no sign step, as in the lesson."),
            ("list", replication_lines(replication, names)),
            ("image", "unbounded attack", "images/replication.png")]),
        ("Ideal class image", [
            ("text", f"From noise, Adam on the input, loss = cross-entropy + lambda * TV, {cfg.ideal_steps} steps."),
            ("list", [f"{label}: p({target_names}) = {run.probability:.3f}, total variation {run.total_variation:.2f}"
                      for label, run in ideal.items()]),
            ("image", "ideal class snapshots", "images/ideal_class.png")]),
    ]
    return sweep, replication.image


def _gradcam_before_after(model, originals: np.ndarray, attacked: np.ndarray, forward, names: list[str],
                          captions: list[str], path: Path) -> None:
    before, after = probabilities(forward, originals), probabilities(forward, attacked)
    overlays = [[overlay(image, heatmap) for image, heatmap in zip(pixels, gradcam(model, pixels, p.argmax(1)))]
                for pixels, p in ((originals, before), (np.clip(attacked, 0, 255), after))]
    plot_gradcam_pairs(overlays[0], overlays[1], before, after, names, captions, path)


def _robust_vs_standard(report: Report, sweep: Sweep, standard: Reference, images: np.ndarray, labels: np.ndarray,
                        targets: list[int], cfg: AdversarialParams, seed: int, images_dir: Path) -> tuple:
    """The same images and attacks on a model without adversarial training: what the robustness cost and bought."""
    with phase(f"adversarial_report: the same sweep on {standard.name}"):
        theirs = epsilon_sweep(logits_function(standard.model), images, labels, targets, cfg.epsilons, cfg.steps,
                               cfg.step_factor, seed, cfg.batch_size)
    table = side_by_side(sweep_table(sweep), sweep_table(theirs))
    plot_robust_vs_standard(table, standard.name, images_dir / "robust_vs_standard.png")
    report.metrics["standard"] = {"model": standard.name, "sweep": sweep_table(theirs).to_dict(orient="records")}
    return ("Robust vs standard model", [
        ("text", f"The pipeline's model (adversarially fine-tuned) beside {standard.name}, on the same "
                 f"{len(images)} test images and the same attacks. Columns ending in _standard are {standard.name}'s."),
        ("table", table), ("image", "robust vs standard model", "images/robust_vs_standard.png")])


def _transfer(report: Report, model, sweep: Sweep, others: list[Reference], images: np.ndarray, labels: np.ndarray,
              targets: list[int]) -> tuple:
    """Do the targeted images made against the pipeline's model fool another model too?"""
    forward = logits_function(model)
    rows = []
    for other in others:
        rows += transfer_rates(forward, logits_function(other.model), sweep, images, labels, targets, other.name)
    table = pd.DataFrame(rows)
    report.metrics["transfer"] = table.to_dict(orient="records")
    return ("Transfer to other models", [
        ("text", "The targeted images of the sweep, made against the pipeline's model only, scored by each other "
                 "model, on the images that model classified correctly. transfer_targeted: it too now says a target "
                 "class; transfer_fooled: it no longer says the true class; source_success: the pipeline's own model "
                 "says a target class on the same images."),
        ("table", table)])


def _replication_input(cfg: AdversarialParams, root: Path, images, labels, targets, size: int) -> np.ndarray:
    """The configured image, or the first sampled test image outside the target classes."""
    if cfg.replication_image:
        try:
            data = (root / cfg.replication_image).read_bytes()
            return np.asarray(resize(decode_rgb(data, max_pixels=pixel_limit(size)), size), np.float32)
        except (OSError, UndecodableImage) as exc:
            raise ParamsError(f"adversarial.replication_image: cannot read {cfg.replication_image}: {exc}") from None
    candidates = [i for i in range(len(labels)) if labels[i] not in targets]
    if not candidates:
        raise ParamsError("adversarial.replication_image: the sampled test images hold no non-target image; set one")
    return images[candidates[0]]


def _imagenet(report: Report, dog: np.ndarray, cfg: AdversarialParams, seed: int, root: Path,
              images_dir: Path) -> None:
    """The lesson's ImageNet view: top-5 before and after the unbounded attack, and an ImageNet ideal class."""
    net = cfg.imagenet
    if not net.class_index:
        raise ParamsError("adversarial.imagenet.class_index: required with adversarial.imagenet.weights")
    index = json.loads((root / net.class_index).read_text())
    names = [index[str(i)][1] for i in range(1000)]
    forward = logits_function(imagenet_classifier(net.backbone, net.alpha, net.weights, root))
    with phase(f"adversarial_report: ImageNet unbounded attack ({cfg.replication_steps} steps)"):
        replication = replicate_seed_attack(forward, np.asarray(resize(_to_image(dog), 224), np.float32),
                                            [net.target_class], cfg.replication_steps, cfg.replication_step_size)
    plot_attack_grid(replication.image[None], replication.adversarial[None], replication.before[None],
                     replication.after[None], names, "ImageNet classifier, unbounded",
                     images_dir / "imagenet_replication.png")
    with phase(f"adversarial_report: ImageNet ideal class image ({cfg.ideal_steps} steps)"):
        ideal = ideal_image(forward, 224, class_mask(1000, [net.target_class]), cfg.ideal_steps,
                            cfg.ideal_learning_rate, cfg.ideal_tv_weight, cfg.ideal_snapshot_every, seed)
    target = names[net.target_class]
    plot_ideal({f"ImageNet {target}": ideal}, images_dir / "imagenet_ideal.png")
    before, after = top_k(replication.before, names), top_k(replication.after, names)
    report.metrics["imagenet"] = {"top5_before": before, "top5_after": after,
                                  "ideal_target_probability": ideal.probability}
    report.sections.append(("ImageNet classifier", [
        ("text", f"{net.backbone} alpha {net.alpha} with its ImageNet top; target class {net.target_class} ({target})."),
        ("list", [f"top-5 before: {_ranked(before)}", f"top-5 after: {_ranked(after)}",
                  f"ideal {target}: p = {ideal.probability:.3f}"]),
        ("image", "ImageNet unbounded attack", "images/imagenet_replication.png"),
        ("image", "ImageNet ideal class", "images/imagenet_ideal.png")]))


def _ranked(ranked: list[tuple[str, float]]) -> str:
    return ", ".join(f"{name} {p:.3f}" for name, p in ranked)


def _to_image(pixels: np.ndarray):
    from PIL import Image

    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
