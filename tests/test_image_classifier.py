"""The registered image model (serving/image_classifier.py, logged by serving/export.py): MLflow loads it in a
process that cannot import transferlab, and it answers encoded image files as the Keras model answers their
pixels, decoded as preprocess decodes them."""

from __future__ import annotations

import io
import json

import keras
import numpy as np
import pandas as pd
from PIL import Image

from tests.conftest import run_without_transferlab
from transferlab.data.images import model_pixels
from transferlab.modeling.assembly import pixel_scaling
from transferlab.modeling.outputs import class_probabilities
from transferlab.serving.export import log_image_model
from transferlab.tracking.runs import stage_run

CLASSES = ["cat", "dog", "fox"]


def _model(units: int, activation: str):
    keras.utils.set_random_seed(3)
    inputs = keras.Input((32, 32, 3), name="pixels")
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(pixel_scaling("mobilenet_v2", inputs)))
    logits = keras.layers.Dense(units, name="logits")(features)
    return keras.Model(inputs, keras.layers.Activation(activation, name="probabilities")(logits))


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _images() -> list[bytes]:
    rng = np.random.default_rng(0)
    wide = Image.fromarray(rng.integers(0, 255, (40, 120, 3), dtype=np.uint8))  # crop and squash differ
    tall = Image.fromarray(rng.integers(0, 255, (90, 30, 3), dtype=np.uint8))
    return [_encoded(wide, "PNG"), _encoded(tall, "JPEG")]


def _logged(tmp_path, model, classes, resize="squash", top_k=3, **settings) -> str:
    model.save(tmp_path / "model.keras")
    with stage_run("evaluate", "serving-test", tmp_path, {}) as tracker:
        return log_image_model(tracker, tmp_path / "model.keras", classes, resize, top_k, **settings)


SCRIPT = """
import base64, json, pandas as pd, mlflow
model = mlflow.pyfunc.load_model(open("uri").read())
images = [open(name, "rb").read() for name in ("0.bin", "1.bin")]
frame = pd.DataFrame({"image": [images[0], b"not an image", base64.b64encode(images[1]).decode()]})
answer = model.predict(frame, params={"top_k": 2})
print(json.dumps({"rows": answer.to_dict("records"), "inputs": str(model.metadata.get_input_schema()),
                  "params": str(model.metadata.get_params_schema())}))
print("MODULES:", sorted(name for name in sys.modules if name.split(".")[0] == "transferlab"))
"""


def test_the_logged_image_model_loads_and_answers_image_files_without_transferlab(tmp_path):
    model = _model(3, "softmax")
    uri = _logged(tmp_path, model, CLASSES, resize="center_crop")
    (tmp_path / "uri").write_text(uri)
    images = _images()
    for index, data in enumerate(images):
        (tmp_path / f"{index}.bin").write_bytes(data)
    answer = json.loads(run_without_transferlab(SCRIPT, tmp_path).split("MODULES:")[0])
    rows = answer["rows"]
    assert answer["inputs"] == "['image': binary (required)]" and "'top_k': long (default: 3)" in answer["params"]
    assert rows[1]["class"] is None and rows[1]["error"] == "not an image (unrecognised format)"
    pixels = np.stack([model_pixels(data, 32, "center_crop") for data in images]).astype(np.float32)
    expected = model.predict(pixels, verbose=0)
    for row, probabilities in zip((rows[0], rows[2]), expected):
        order = np.argsort(-probabilities)[:2]
        assert row["top_classes"] == [CLASSES[i] for i in order] and row["class"] == CLASSES[order[0]]
        np.testing.assert_allclose(row["top_probabilities"], probabilities[order], rtol=1e-5)
        assert row["probability"] == row["top_probabilities"][0] and row["error"] is None


def test_a_sigmoid_model_answers_both_classes_with_the_pipelines_own_probabilities(tmp_path):
    import mlflow

    model = _model(1, "sigmoid")
    served = mlflow.pyfunc.load_model(_logged(tmp_path, model, ["cat", "dog"], top_k=5))
    rows = served.predict(pd.DataFrame({"image": _images()}), params={"top_k": 5}).to_dict("records")
    pixels = np.stack([model_pixels(data, 32) for data in _images()]).astype(np.float32)
    expected = class_probabilities(model.predict(pixels, verbose=0))
    for row, probabilities in zip(rows, expected):
        assert len(row["top_classes"]) == 2 and abs(sum(row["top_probabilities"]) - 1) < 1e-6  # top_k capped
        by_class = dict(zip(row["top_classes"], row["top_probabilities"]))
        np.testing.assert_allclose([by_class["cat"], by_class["dog"]], probabilities, rtol=1e-5)


def test_predict_uses_the_registered_image_models_keras_model_classes_and_resize(tmp_path):
    from transferlab.evaluation.predict import load_model
    from transferlab.tracking.promotion import GateRules, register_and_gate

    model = _model(3, "softmax")
    uri = _logged(tmp_path, model, CLASSES, resize="center_crop")
    register_and_gate(uri, "pets", 0.9, GateRules(0.5, 0.01), {"classes": json.dumps(CLASSES)})
    loaded = load_model("models:/pets@champion")
    assert (loaded.classes, loaded.resize, loaded.image_size) == (CLASSES, "center_crop", 32)
    pixels = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded.model.predict(pixels, verbose=0), model.predict(pixels, verbose=0), rtol=1e-6)


def _forms(images: list[bytes]) -> dict[str, dict]:
    """The JSON bodies MLflow's scoring server takes for a column `image`, as a client writes them."""
    import base64

    encoded = [base64.b64encode(data).decode() for data in images]
    return {"dataframe_split": {"dataframe_split": {"columns": ["image"], "data": [[text] for text in encoded]}},
            "dataframe_records": {"dataframe_records": [{"image": text} for text in encoded]},
            "instances": {"instances": [{"image": text} for text in encoded]},
            "instances, bare": {"instances": encoded},
            "inputs": {"inputs": {"image": encoded}},
            "inputs, records": {"inputs": [{"image": text} for text in encoded]}}


def test_every_json_form_of_mlflows_server_is_answered_as_dataframe_split(tmp_path):
    """Issue 42: `instances` and `inputs` reached the model as base64 text and were answered "not an image"."""
    import mlflow
    from mlflow.pyfunc.scoring_server import infer_and_parse_data

    served = mlflow.pyfunc.load_model(_logged(tmp_path, _model(3, "softmax"), CLASSES))
    schema = served.metadata.get_input_schema()
    answers = {form: served.predict(infer_and_parse_data(body, schema)).to_dict("records")
               for form, body in _forms(_images()).items()}  # parsed as the server parses a request's body
    expected = answers.pop("dataframe_split")
    assert [row["error"] for row in expected] == [None, None]
    for form, rows in answers.items():
        assert rows == expected, form


def test_the_served_model_refuses_images_over_its_logged_max_image_scale(tmp_path):
    """Issue 42: a 35-byte GIF declaring 16000x16000 grew the server by 4.4 GB a request. The limit is
    data.max_image_scale, logged with the model: here 2, so a 32 px model takes at most 64 x 64 = 4096 pixels."""
    import mlflow

    from tests.test_images import _gif_canvas

    served = mlflow.pyfunc.load_model(_logged(tmp_path, _model(3, "softmax"), CLASSES, max_image_scale=2))
    wide, tall = _images()  # 120 x 40 = 4800 pixels, 30 x 90 = 2700
    rows = served.predict(pd.DataFrame({"image": [wide, tall, _gif_canvas(16000, 16000)]})).to_dict("records")
    assert rows[0]["error"].startswith("too large: 120x40 pixels is over the limit of 0.0041 megapixels")
    assert rows[1]["error"] is None and rows[1]["class"] in CLASSES
    assert rows[2]["error"].startswith("too large: 16000x16000 pixels")
