"""The fine-tuned model into the MLflow registry: logged twice (pixels in: Keras; image files in: the pyfunc
that `mlflow models serve` serves), tagged with where it came from, registered and gated for `champion`."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from transferlab.core.params import Params
from transferlab.serving.export import log_image_model
from transferlab.tracking.class_gate import class_counts
from transferlab.tracking.completion import MODEL_MD5_TAG
from transferlab.tracking.lineage import lineage_tags
from transferlab.serving.release_events import announce_champion
from transferlab.tracking.promotion import CHAMPION, TEST_DATA_TAG, WEIGHTS_TAG, Decision, promote
from transferlab.tracking.tracker import Tracker

log = logging.getLogger("transferlab.registry")


def weights_digest(model) -> str:
    """sha256 of the model's weights (shapes and bytes): equal for a rerun that trained nothing new, whatever the
    saved file's zip timestamps."""
    import hashlib

    digest = hashlib.sha256()
    for array in model.get_weights():
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def register(tracker: Tracker, params: Params, root: Path, params_file: Path, model, accuracy: float,
             test_images: int, classes: list[str], confusion) -> tuple[str, Decision] | None:
    """The registered version and the gate's decision (overall and per class, from the test `confusion`
    matrix); None when not tracked (--no-track) or tracking was lost."""
    if not tracker.active:
        return None
    paths, size = params.paths, params.data.image_size
    lineage = lineage_tags(tracker, root, params_file, {
        TEST_DATA_TAG: paths.prepared, "data.features.md5": paths.features_of(params.backbone.name),
        MODEL_MD5_TAG: paths.fine_tuned})  # a later execution holding the same model file may adopt the version
    tracker.set_tags(lineage)
    keras_uri = tracker.log_keras_model(model, "keras_model", np.zeros((1, size, size, 3), np.float32))
    image_uri = log_image_model(tracker, root / paths.fine_tuned_model, classes, params.data.resize,
                                params.evaluate.top_k, max_image_scale=params.data.max_image_scale)
    extra = {**lineage, WEIGHTS_TAG: weights_digest(model), **({"keras_model_uri": keras_uri} if keras_uri else {})}
    promoted = promote(tracker, image_uri, accuracy, test_images, classes, params.evaluate, size, extra,
                       class_counts(classes, confusion))
    if promoted and promoted[1].alias == CHAMPION and promoted[1].new:
        try:  # the model is registered and champion whatever Prefect says: a lost event is a log line
            announce_champion(params.evaluate.registered_model, promoted[0], promoted[1].previous)
        except Exception as exc:  # noqa: BLE001 - any failure of the announcement must not fail the stage
            log.warning("the release event was not sent (%s: %s); run the release by hand: python -m flows.release "
                        "run --version %s", type(exc).__name__, exc, promoted[0])
    return promoted
