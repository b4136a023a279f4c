"""The predict command on a real photo and a corrupt file: one line per file, the others go on."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import PROJECT_ROOT


def _model():
    import keras

    from transferlab.modeling.assembly import pixel_scaling

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(pixel_scaling("mobilenet_v2", inputs)))
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


def _save_model(path):
    model = _model()
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


def test_a_decompression_bomb_is_one_line_and_the_other_files_go_on(tmp_path):
    """Issue 14, finding 6: a 437 KB PNG of 60000x60000 pixels once took 18.4 GB in predict."""
    from tests.test_images import _gif_canvas, _png_header_only

    _save_model(tmp_path / "model")
    bomb, canvas, fine = tmp_path / "bomb.png", tmp_path / "canvas.gif", tmp_path / "fine.png"
    bomb.write_bytes(_png_header_only(60000, 60000))
    canvas.write_bytes(_gif_canvas(16000, 16000))  # issue 42: 35 bytes, 5.5 GB, and a class for an answer
    from PIL import Image

    Image.new("RGB", (40, 30), (10, 200, 30)).save(fine)
    result = subprocess.run([sys.executable, "-m", "transferlab", "predict", str(bomb), str(canvas), str(fine),
                             "--model", str(tmp_path / "model")],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if ": error:" in line]
    assert len(errors) == 2 and errors[0].startswith(f"{bomb}: error: too large")  # Pillow's own guard, first
    assert errors[1] == (f"{canvas}: error: too large: 16000x16000 pixels is over the limit of 0.262 megapixels for "
                         f"this model's input size (data.max_image_scale; a decompression bomb, or far more pixels than"
                         f" the model can use: shrink it first)")
    assert result.stdout.startswith(f"{fine}: ")


def test_predict_reads_a_huge_file_only_as_far_as_its_header(tmp_path, monkeypatch):
    """Issue 42: a 4 GB file was read whole (5.2 GB) before "not an image"."""
    from pathlib import Path

    from tests.test_images import CountingFile
    from transferlab.evaluation.predict import LoadedModel, predict_probabilities

    huge = tmp_path / "huge.jpg"
    with open(huge, "wb") as file:
        file.truncate(300 * 2**20)  # sparse: no disk taken
    opened: list[CountingFile] = []

    def counted_open(path, mode="r", *args, **kwargs):
        opened.append(CountingFile(path, mode))
        return opened[-1]

    monkeypatch.setattr(Path, "open", counted_open)
    model = _model()
    _, errors = predict_probabilities(LoadedModel(model, ["cat", "dog", "fox"], 32), [huge])
    assert errors == {0: "not an image (unrecognised format)"}
    assert len(opened) == 1 and opened[0].read_bytes < 2**20 and opened[0].closed


def test_a_registered_model_with_the_server_down_fails_in_seconds_without_the_password(tmp_path):
    """Issue 14, finding 5: 254 s, and the error line carried the password."""
    from tests.conftest import closed_port

    result = subprocess.run([sys.executable, "-m", "transferlab", "predict", "x.jpg", "--model",
                             "models:/transferlab@champion", "--tracking-uri",
                             f"http://alice:hunter2-Pa55@127.0.0.1:{closed_port()}"],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1  # stopped by the probe, before MLflow's retrying client (the 254 s) starts
    line = result.stderr.strip().splitlines()[-1]  # (TensorFlow's start-up lines come first: issue 15)
    assert line.startswith("transferlab predict: error: MLFLOW_TRACKING_URI http://***@127.0.0.1:") 
    assert "no MLflow server answers" in line and line.endswith("or give --model a local model.keras")
    assert "hunter2" not in result.stderr + result.stdout and "Traceback" not in result.stderr


def _photo_tree(root):
    """Five small images in nested folders, a corrupt one among them, a text file and a hidden file."""
    from PIL import Image

    rng = np.random.default_rng(1)
    (root / "a" / "deeper").mkdir(parents=True)
    names = ["a/1.png", "a/2.jpg", "a/deeper/3.png", "b.png", "c.jpeg"]
    (root / "b").mkdir()
    for name in names:
        Image.fromarray(rng.integers(0, 255, (20 + len(name), 40, 3), dtype=np.uint8)).save(root / name)
    (root / "a" / "2b.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (root / "a" / "notes.txt").write_text("not an image")
    (root / "a" / ".hidden.png").write_bytes((root / "b.png").read_bytes())
    return names


def test_folders_globs_and_batches_keep_each_file_with_its_own_answer(tmp_path):
    from transferlab.data.images import model_pixels
    from transferlab.evaluation.predict import load_model, predict_files

    _save_model(tmp_path / "model")
    photos = tmp_path / "photos"
    _photo_tree(photos)
    loaded = load_model(str(tmp_path / "model"))
    inputs = [str(photos / "a"), str(photos / "*.png"), str(photos / "none*.jpg"), str(photos / "c.jpeg")]
    results = predict_files(loaded, inputs, top_k=3, batch_size=2)  # the corrupt file sits inside a batch
    files = [result["file"] for result in results]
    expected_files = [photos / "a/1.png", photos / "a/2.jpg", photos / "a/2b.jpg", photos / "a/deeper/3.png",
                      photos / "b.png", photos / "c.jpeg"]
    assert files == [str(path) for path in expected_files] + [str(photos / "none*.jpg")]
    assert "cannot decode" in results[2]["error"] and results[-1]["error"] == "no file matches this pattern"
    for result, path in zip(results, expected_files):
        if "error" in result:
            continue
        probabilities = loaded.model.predict(model_pixels(path.read_bytes(), 32)[None].astype(np.float32),
                                             verbose=0)[0]
        order = np.argsort(-probabilities)
        assert [entry["class"] for entry in result["top"]] == [loaded.classes[i] for i in order]
        np.testing.assert_allclose([entry["probability"] for entry in result["top"]], probabilities[order],
                                   rtol=1e-5)


def test_csv_output_has_one_row_per_file_with_ranked_columns(tmp_path, capsys):
    import io

    import pandas as pd

    from transferlab.cli import main

    _save_model(tmp_path / "model")
    _photo_tree(tmp_path / "photos")
    code = main(["predict", str(tmp_path / "photos"), "--model", str(tmp_path / "model"), "--csv", "--top-k", "2"])
    table = pd.read_csv(io.StringIO(capsys.readouterr().out), keep_default_na=False)
    assert code == 1 and list(table.columns) == ["file", "class", "probability", "class_2", "probability_2", "error"]
    assert len(table) == 6 and (table["error"] != "").sum() == 1
    good = table[table["error"] == ""]
    assert (good["probability"].astype(float) >= good["probability_2"].astype(float)).all()


@pytest.mark.timeout(60)
def test_predict_never_opens_a_fifo_a_socket_or_a_device_given_walked_or_globbed(tmp_path):
    """Issue 31: `transferlab predict` on a folder with a FIFO waited on it forever."""
    from tests.test_folder_source import _special_files
    from transferlab.evaluation.predict import expand_inputs

    _special_files(tmp_path / "in")
    (tmp_path / "in" / "real.png").write_bytes(b"not decoded here")
    for given in ([str(tmp_path / "in")], [str(tmp_path / "in" / "*.png")],
                  [str(tmp_path / "in" / name) for name in ("pipe.png", "sock.png", "zero.png", "real.png")]):
        files, left_out = expand_inputs(given)
        assert files == [tmp_path / "in" / "real.png"], given
        reasons = sorted(entry["error"] for entry in left_out)
        assert reasons == ["a FIFO (named pipe), not an image file; not opened",
                           "a character device, not an image file; not opened",
                           "a socket, not an image file; not opened"], given


@pytest.mark.parametrize("port", ["70000", "0", "http"])
def test_serve_refuses_a_port_that_cannot_be_one_in_one_line(port, capsys):
    """Issue 31: `--port 70000` reached the socket call, whose OverflowError was a traceback."""
    from transferlab.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["serve", "--port", port])
    assert exited.value.code == 2
    [line] = [text for text in capsys.readouterr().err.splitlines() if "--port" in text and "error" in text]
    assert "must be" in line and repr(port) in line


def test_serve_names_a_host_it_cannot_resolve_in_one_line(capsys, monkeypatch):
    """Issue 42: `--host bad..host` was a UnicodeError traceback from the port check (IDNA refuses an empty label;
    no resolver is asked, so the test needs no network)."""
    from transferlab.cli import main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///unused.db")  # main sets it for serve: keep ours unchanged
    assert main(["serve", "--host", "bad..host"]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("transferlab serve: error: --host: 'bad..host' is not an address or a host name")
