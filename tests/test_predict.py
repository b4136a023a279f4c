"""The predict command on a real photo and a corrupt file: one line per file, the others go on."""

import json
import subprocess
import sys

import numpy as np

from tests.conftest import PROJECT_ROOT


def _save_model(path):
    import keras

    from transferlab.modeling.assembly import BackbonePreprocess

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(BackbonePreprocess("mobilenet_v2")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    path.mkdir()
    model.save(path / "model.keras")
    (path / "classes.json").write_text(json.dumps([{"name": n} for n in ("cat", "dog", "fox")]))


def test_predict_real_photo_and_corrupt_file(tmp_path, assets):
    _save_model(tmp_path / "model")
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    photo = assets / "images" / "samples" / "darknet_dog.jpg"
    result = subprocess.run([sys.executable, "-m", "transferlab", "predict", str(photo), str(corrupt),
                             "--model", str(tmp_path / "model"), "--json", "--top-k", "2"],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1  # one file failed
    output = json.loads(result.stdout)
    assert [entry["file"] for entry in output] == [str(photo), str(corrupt)]
    top = output[0]["top"]
    assert len(top) == 2 and {entry["class"] for entry in top} <= {"cat", "dog", "fox"}
    # The command's top-2 are the model's own two most likely classes for that image, in order.
    from transferlab.data.images import decode_rgb, resize
    from transferlab.modeling.assembly import load_keras

    pixels = np.asarray(resize(decode_rgb(photo.read_bytes(), draft_size=64), 32), np.float32)[None]
    expected = load_keras(tmp_path / "model" / "model.keras").predict(pixels, verbose=0)[0]
    order = np.argsort(-expected)[:2]
    assert [entry["class"] for entry in top] == [["cat", "dog", "fox"][i] for i in order]
    np.testing.assert_allclose([entry["probability"] for entry in top], expected[order], rtol=1e-5)
    assert "decode" in output[1]["error"] or "not an image" in output[1]["error"]
    assert f"{corrupt}: error:" in result.stderr and "Traceback" not in result.stderr


def test_missing_model_is_a_one_line_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "transferlab", "predict", "x.jpg", "--model", str(tmp_path / "no")],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "--model: no model file" in result.stderr and "Traceback" not in result.stderr
