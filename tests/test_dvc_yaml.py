"""dvc.yaml declares exactly the outputs the paths model names, as DVC itself resolves them."""

from __future__ import annotations

import pytest

from tests.conftest import PROJECT_ROOT
from transferlab.core.params_loader import load_params
from transferlab.core.paths import PARAMS_CHECK_FILE


def _expected_outs(paths, backbones: list[str], fine_tuned: str) -> dict[str, set[str]]:
    report = paths.adversarial_report
    expected = {"check_params": {PARAMS_CHECK_FILE}, "download": {paths.raw}, "preprocess": {paths.prepared},
                "fine_tune": {paths.fine_tuned, paths.fine_tune_metrics, paths.fine_tune_plots},
                "evaluate": {paths.evaluate_per_class, paths.evaluate_metrics, paths.evaluate_plots,
                             paths.summary_metrics},
                "adversarial_report": {f"{report}/{name}" for name in
                                       ("images", "report.md", "report.html", "metrics.json", "sweep.tsv")}
                | {paths.adversarial_metrics},
                "data_report": {paths.data_report, paths.data_metrics}}
    for name in backbones:
        expected[f"extract_features@{name}"] = {paths.features_of(name)}
        expected[f"train_head@{name}"] = {paths.head_of(name), paths.head_metrics_of(name), paths.head_plots_of(name)}
    return expected


@pytest.fixture(scope="module")
def stages():
    from dvc.repo import Repo

    with Repo(str(PROJECT_ROOT)) as repo:
        return {stage.addressing: stage for stage in repo.index.stages}


def test_every_stage_writes_what_the_paths_model_names(stages):
    params = load_params(PROJECT_ROOT / "params.yaml")
    expected = _expected_outs(params.paths, params.compare.backbones, params.backbone.name)
    assert {name: {str(out.def_path) for out in stage.outs} for name, stage in stages.items()} == expected


def test_fine_tune_and_evaluate_read_the_head_the_paths_model_names(stages):
    params = load_params(PROJECT_ROOT / "params.yaml")
    head = params.paths.head_of(params.backbone.name)
    for name in ("fine_tune", "evaluate"):
        assert head in {str(dep.def_path) for dep in stages[name].deps}, name
    assert params.paths.fine_tuned in {str(dep.def_path) for dep in stages["adversarial_report"].deps}


def test_the_data_report_s_gate_comes_before_fine_tuning_and_no_head_waits_for_it(stages):
    """A head depending on the report would retrain every compared head when backbone.name changes."""
    params = load_params(PROJECT_ROOT / "params.yaml")
    assert params.paths.data_metrics in {str(dep.def_path) for dep in stages["fine_tune"].deps}
    for name in params.compare.backbones:
        assert params.paths.data_metrics not in {str(dep.def_path) for dep in stages[f"train_head@{name}"].deps}


def test_every_stage_descends_from_the_params_check(stages):
    """DVC deletes outputs before a stage runs: the guard must run, and fail, before any stage that has outputs."""
    import networkx as nx

    from dvc.repo import Repo

    with Repo(str(PROJECT_ROOT)) as repo:
        graph = repo.index.graph
        check = next(stage for stage in graph if stage.addressing == "check_params")
        # DVC's graph points from a stage to the stages it depends on
        descendants = {stage.addressing for stage in nx.ancestors(graph, check)}
    assert descendants == set(stages) - {"check_params"}


def test_plots_are_drawn_once_at_the_top_level(stages):
    """Stage-level plots made `dvc plots show` draw duplicates and empty charts (a confusion scatter, l2 vs step)."""
    import yaml

    assert [name for name, stage in stages.items() if any(out.plot for out in stage.outs)] == []
    plots = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["plots"]
    titles = [plot if isinstance(plot, str) else next(iter(plot)) for plot in plots]  # a picture is its path
    assert len(titles) == len(set(titles)) >= 5
