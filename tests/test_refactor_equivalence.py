"""The architecture v2 refactor (issue 13) changed nothing a user gets: the pipeline at the last commit before
it, run on the same synthetic configuration, writes the same figures as the session's built workspace."""

from __future__ import annotations

import importlib.util
import math
import subprocess

import pytest

from tests.conftest import BUILT_PARAMS, PROJECT_ROOT
from transferlab.workspace import create_workspace, run_tool

pytestmark = pytest.mark.slow
BEFORE = "10dc663"  # the last commit of the flat layout


def _compare_revisions():
    spec = importlib.util.spec_from_file_location("compare_revisions", PROJECT_ROOT / "bench" / "compare_revisions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_pipeline_before_the_refactor_writes_the_same_figures(built_workspace, tmp_path):
    if subprocess.run(["git", "cat-file", "-e", f"{BEFORE}^{{commit}}"], cwd=PROJECT_ROOT).returncode != 0:
        pytest.skip(f"commit {BEFORE} is not in this clone's history")
    compare = _compare_revisions()
    after, _, env = built_workspace
    # issue 18's keys; BUILT_PARAMS sets them to what that revision did
    unknown_before = {"head.l2", "fine_tune.accept", "fine_tune.flip_tta"}
    before = create_workspace(tmp_path / "ws", {k: v for k, v in BUILT_PARAMS.items() if k not in unknown_before},
                              source=compare.export(BEFORE, tmp_path / "src"))
    run_tool(before, "dvc", "repro", env=env)
    old, new = compare.figures(before), compare.figures(after)
    # Figures changed on purpose since: issue 15 dropped top-3 accuracy of a 3-class task (always 1.0) and added
    # metrics/summary.json, metrics/adversarial.json and what fine-tuning reached when it was not kept (*_tried);
    # issue 18 added the linear probe beside each head, the head's L2, and accuracy intervals; issue 19 the
    # adversarial report's transfer check (the built workspace compares two backbones); issue 18 also the interval
    # of fine-tuning's validation loss change and the flip-TTA choice with the losses it was made on; issue 28 the
    # data report's metrics/data.json.
    added = ("_tried", ".probe_", ".l2", ".accuracy_low", ".accuracy_high", ".transfer[", ".val_loss_change_",
             "flip_tta", ".val_loss_single_view")
    assert {key for key in set(old) - set(new) if "top_3_accuracy" not in key} == set()
    assert {key for key in set(new) - set(old)
            if not key.startswith(("metrics/summary.json:", "metrics/adversarial.json:", "metrics/data.json:"))
            and not any(part in key for part in added)} == set()
    common = set(old) & set(new)
    assert len(common) >= 40
    differ = {key: (old[key], new[key]) for key in common
              if not math.isclose(old[key], new[key], rel_tol=1e-4, abs_tol=1e-4)}
    assert not differ
