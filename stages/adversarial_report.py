"""DVC stage `adversarial_report`: budgeted attacks with an epsilon sweep, the seed's unbounded dog-to-cat
demo, and "ideal class" images, on the fine-tuned model (params adversarial.*)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from transferlab.tracking import mlflow_runs
from transferlab.adversarial.sweep import epsilon_sweep, replicate_seed_attack, target_classes, top_k
from transferlab.adversarial.report import (plot_attack_grid, plot_ideal, plot_sweep, replication_lines,
                                            sweep_table, to_html, to_markdown)
from transferlab.core.atomic import atomic_dir, atomic_write_text
from transferlab.adversarial.attacks import class_mask, ideal_image, logits_model, probabilities
from transferlab.modeling.devices import configure_devices
from transferlab.core.errors import ParamsError
from transferlab.modeling.fine_tuning import image_dataset
from transferlab.data.images import UndecodableImage, decode_rgb, resize
from transferlab.modeling.assembly import load_keras
from transferlab.stage_runner import StageContext, main_for

log = logging.getLogger("transferlab.adversarial.report")
REPORT_DIR = "adversarial"


def test_images(prepared: Path, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` test images in shard order (preprocess already shuffled them, seeded)."""
    images, labels = [], []
    for batch_images, batch_labels in image_dataset(prepared, "test", 64):
        images.append(batch_images.numpy())
        labels.append(batch_labels.numpy())
        if sum(len(b) for b in labels) >= count:
            break
    return np.concatenate(images)[:count], np.concatenate(labels)[:count]


def replication_input(context: StageContext, images, labels, targets, size: int) -> np.ndarray:
    path = context.params.adversarial.replication_image
    if path:
        try:
            return np.asarray(resize(decode_rgb((context.root / path).read_bytes()), size), np.float32)
        except (OSError, UndecodableImage) as exc:
            raise ParamsError(f"adversarial.replication_image: cannot read {path}: {exc}") from None
    candidates = [i for i in range(len(labels)) if labels[i] not in targets]
    if not candidates:
        raise ParamsError("adversarial.replication_image: the sampled test images hold no non-target image; set one")
    return images[candidates[0]]


def own_model_sections(context, model, classes, images_dir: Path) -> tuple[list, dict, np.ndarray]:
    cfg = context.params.adversarial
    names = [c["name"] for c in classes]
    targets = target_classes(cfg.target, classes)
    forward = logits_model(model)
    images, labels = test_images(context.path(context.params.paths.prepared), cfg.num_images)
    sweep = epsilon_sweep(forward, images, labels, targets, cfg.epsilons, cfg.steps, cfg.step_factor,
                          context.params.base.seed, cfg.batch_size)
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
    replication = replicate_seed_attack(forward, replication_input(context, images, labels, targets, size), targets,
                                        cfg.replication_steps, cfg.replication_step_size)
    plot_attack_grid(replication.image[None], replication.adversarial[None], replication.before[None],
                     replication.after[None], names, f"unbounded, {cfg.replication_steps} steps",
                     images_dir / "replication.png")
    mask = class_mask(len(names), targets)
    ideal = {f"lambda={lam}": ideal_image(forward, size, mask, cfg.ideal_steps, cfg.ideal_learning_rate, lam,
                                          cfg.ideal_snapshot_every, context.params.base.seed)
             for lam in (cfg.ideal_tv_weight, 0.0)}
    plot_ideal(ideal, images_dir / "ideal_class.png")
    target_names = ", ".join(names[t] for t in targets)
    metrics = {"sweep": table.to_dict(orient="records"),
               "targeted_success_at_max_epsilon": float(table["targeted_success"].iloc[-1]),
               "replication": {"target_probability_before": float(replication.before[mask].sum()),
                               "target_probability_after": float(replication.after[mask].sum()),
                               "linf": replication.linf},
               "ideal": {label: {"target_probability": run.probability, "total_variation": run.total_variation}
                         for label, run in ideal.items()}}
    sections = [
        ("Budgeted attacks (the pipeline's model)", [
            ("text", f"PGD under an L-inf budget (random start, {cfg.steps} steps of {cfg.step_factor}*epsilon/steps) "
                     f"on {len(images)} test images. Targeted: toward {target_names}, on the correctly classified "
                     f"images of other classes. An image counts as broken at epsilon when an attack within that "
                     f"budget (or a smaller one) fooled the model. Epsilon is in pixels out of 255."),
            ("table", table), ("image", "robust accuracy vs epsilon", "images/epsilon_sweep.png"),
            ("image", "original | perturbation | adversarial", "images/pgd_examples.png")]),
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
    return sections, metrics, replication.image


def imagenet_sections(context, images_dir: Path, dog: np.ndarray) -> tuple[list, dict]:
    """The lesson's ImageNet view: top-5 before and after, and an ImageNet ideal class, when configured."""
    cfg = context.params.adversarial.imagenet
    if not cfg.weights:
        return [], {}
    import keras

    from transferlab.core.backbones import resolve_weights_path

    weights = resolve_weights_path(cfg.weights, context.root)
    if not cfg.class_index:
        raise ParamsError("adversarial.imagenet.class_index: required with adversarial.imagenet.weights")
    index = json.loads((context.root / cfg.class_index).read_text())
    names = [index[str(i)][1] for i in range(1000)]
    application = {"mobilenet": keras.applications.MobileNet, "mobilenet_v2": keras.applications.MobileNetV2}
    try:
        classifier = application[cfg.backbone](alpha=cfg.alpha, include_top=True, weights=str(weights))
    except (ValueError, OSError) as exc:
        raise ParamsError(f"adversarial.imagenet.weights: {cfg.weights} does not fit {cfg.backbone}(alpha="
                          f"{cfg.alpha}, with top): {str(exc).splitlines()[0][:160]}") from None
    forward = _imagenet_forward(classifier, cfg.backbone)
    adv = context.params.adversarial
    image = np.asarray(resize(_to_image(dog), 224), np.float32)
    replication = replicate_seed_attack(forward, image, [cfg.target_class], adv.replication_steps,
                                        adv.replication_step_size)
    plot_attack_grid(replication.image[None], replication.adversarial[None], replication.before[None],
                     replication.after[None], names, "ImageNet classifier, unbounded", images_dir / "imagenet_replication.png")
    ideal = ideal_image(forward, 224, class_mask(1000, [cfg.target_class]), adv.ideal_steps, adv.ideal_learning_rate,
                        adv.ideal_tv_weight, adv.ideal_snapshot_every, context.params.base.seed)
    plot_ideal({f"ImageNet {names[cfg.target_class]}": ideal}, images_dir / "imagenet_ideal.png")
    before, after = top_k(replication.before, names), top_k(replication.after, names)
    metrics = {"imagenet": {"top5_before": before, "top5_after": after,
                            "ideal_target_probability": ideal.probability}}
    fmt = lambda ranked: ", ".join(f"{n} {p:.3f}" for n, p in ranked)  # noqa: E731
    return [("ImageNet classifier", [
        ("text", f"{cfg.backbone} alpha {cfg.alpha} with its ImageNet top; target class {cfg.target_class} "
                 f"({names[cfg.target_class]})."),
        ("list", [f"top-5 before: {fmt(before)}", f"top-5 after: {fmt(after)}",
                  f"ideal {names[cfg.target_class]}: p = {ideal.probability:.3f}"]),
        ("image", "ImageNet unbounded attack", "images/imagenet_replication.png"),
        ("image", "ImageNet ideal class", "images/imagenet_ideal.png")])], metrics


def _imagenet_forward(classifier, backbone: str):
    from transferlab.core.backbones import preprocess_function, spec_for

    inner = logits_model(classifier)
    preprocess = preprocess_function(spec_for(backbone))
    return lambda x: inner(preprocess(x))


def _to_image(pixels: np.ndarray):
    from PIL import Image

    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def report(context: StageContext) -> dict:
    paths = context.params.paths
    mlflow_runs.set_tags(configure_devices(mixed_precision=False).tags())  # gradients on inputs want float32
    model_dir = context.path(paths.models) / "fine_tuned"
    model = load_keras(model_dir / "model.keras")
    classes = json.loads((model_dir / "classes.json").read_text(encoding="utf-8"))
    out = context.path(paths.reports) / REPORT_DIR
    with atomic_dir(out / "images") as images_dir:
        sections, metrics, dog = own_model_sections(context, model, classes, images_dir)
        extra_sections, extra_metrics = imagenet_sections(context, images_dir, dog)
        sections += extra_sections
        metrics.update(extra_metrics)
        markdown = to_markdown(sections)
        page = to_html(sections, images_dir)
    atomic_write_text(out / "report.md", markdown)
    atomic_write_text(out / "report.html", page)
    sweep = metrics["sweep"]
    atomic_write_text(out / "sweep.tsv", pd.DataFrame(sweep).to_csv(sep="\t", index=False))
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    mlflow_runs.log_artifacts(out, "adversarial_report")
    return {"targeted_success_at_max_epsilon": metrics["targeted_success_at_max_epsilon"],
            **{f"robust_accuracy_eps_{row['epsilon']:g}": row["robust_accuracy"] for row in sweep}}


if __name__ == "__main__":
    main_for("adversarial_report", report, ["base", "adversarial"])
