"""Input files named in params exist before DVC clears any stage's outputs (issue 14, finding 3)."""

from __future__ import annotations

import pytest

from transferlab.core.errors import ParamsError
from transferlab.core.inputs import check_inputs
from transferlab.core.params_loader import parse_params


@pytest.mark.parametrize(("raw", "expected"), [
    ({"data": {"source": "folder", "folder": {"root": "nowhere"}}}, "data.folder.root: folder not found: nowhere"),
    ({"data": {"tfds": {"manual_dir": "archives"}}}, "data.tfds.manual_dir: folder not found"),
    ({"backbone": {"weights": "w.h5"}}, "backbone.weights: file not found: w.h5"),
    ({"compare": {"backbones": ["mobilenet_v2", "resnet50"], "weights": {"resnet50": "r.h5"}}},
     "compare.weights.resnet50: file not found: r.h5"),
    ({"adversarial": {"replication_image": "dog.jpg"}}, "adversarial.replication_image: file not found"),
    ({"adversarial": {"imagenet": {"weights": "top.h5"}}}, "adversarial.imagenet.weights: file not found"),
])
def test_a_missing_input_names_its_key(tmp_path, raw, expected):
    with pytest.raises(ParamsError, match=expected):
        check_inputs(parse_params(raw), tmp_path)


def test_present_inputs_pass_and_each_one_removed_fails_naming_its_key(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "w.h5").write_bytes(b"weights")
    params = parse_params({"data": {"source": "folder", "folder": {"root": "images"}},
                           "backbone": {"weights": "w.h5"}})
    assert check_inputs(params, tmp_path) is None  # nothing missing: no error, and nothing to report
    assert sorted(path.name for path in tmp_path.iterdir()) == ["images", "w.h5"]  # it only looks
    (tmp_path / "w.h5").unlink()  # passing depended on the weights file being there ...
    with pytest.raises(ParamsError, match="backbone.weights: file not found: w.h5"):
        check_inputs(params, tmp_path)
    (tmp_path / "w.h5").write_bytes(b"weights")
    (tmp_path / "images").rmdir()  # ... and on the image folder being there
    with pytest.raises(ParamsError, match="data.folder.root: folder not found: images"):
        check_inputs(params, tmp_path)


def test_a_labels_table_path_that_is_a_folder_says_so(tmp_path):
    """Issue 31: "file not found: labels" for a folder that exists sent users looking in the wrong place."""
    (tmp_path / "labels").mkdir()
    with pytest.raises(ParamsError, match=r"^data.table.path: labels is a folder; name the labels table in it"):
        check_inputs(parse_params({"data": {"source": "table", "table": {"path": "labels"}}}), tmp_path)
