"""What the flow reads from DVC's output and how it passes overrides: no Prefect, no DVC run needed."""

from flows.orchestration import CACHED, RAN, outcomes, override_arguments, stage_exit_code


def test_outcomes_are_read_from_dvc_output():
    text = "Running stage 'train_head':\nStage 'download' didn't change, skipping\nStage 'x' is cached - skipping"
    assert outcomes(text, ["download", "train_head", "x", "y"]) == {"download": CACHED, "train_head": RAN, "x": CACHED}
    assert outcomes("Running stage 'extract_features@vgg16':", ["extract_features"]) == {"extract_features": RAN}


def test_overrides_become_dvc_exp_arguments_in_yaml():
    assert override_arguments({"head.dropout": 0.3, "adversarial.epsilons": [0, 2], "data.folder.root": None}) == \
        ["-S", "adversarial.epsilons=[0, 2]", "-S", "data.folder.root=null", "-S", "head.dropout=0.3"]


def test_the_stage_exit_code_is_read_from_dvcs_failure_message():
    output = ("Running stage 'download':\n> python -m stages.download\ndownload: error: params.yaml: data.folder.root: "
              "folder not found\nERROR: failed to reproduce 'download': failed to run: python -m stages.download, "
              "exited with 2")
    assert stage_exit_code(output) == 2
    assert stage_exit_code("ERROR: failed to run: python -m stages.train_head, exited with 1") == 1
    assert stage_exit_code("Running stage 'x'") is None


def test_a_wrong_configuration_is_not_retried_a_transient_failure_is():
    from prefect.states import Failed

    from flows.pipeline import ConfigurationError, _failure, _worth_retrying

    refused = _failure("download", "download: error: data.folder.root: folder not found\nERROR: failed to "
                                   "reproduce 'download': failed to run: python -m stages.download, exited with 2")
    assert isinstance(refused, ConfigurationError) and "data.folder.root: folder not found" in str(refused)
    crashed = _failure("download", "ERROR: failed to run: python -m stages.download, exited with 1")
    assert type(crashed) is RuntimeError

    assert not _worth_retrying(None, None, Failed(data=ConfigurationError("stage download failed: ...")))
    assert _worth_retrying(None, None, Failed(data=RuntimeError("stage download failed: cannot reach host")))


def test_a_prefect_server_that_does_not_answer_is_one_line_without_the_password(monkeypatch):
    from tests.conftest import closed_port
    from flows.pipeline import prefect_api_problem

    monkeypatch.setenv("PREFECT_API_URL", f"http://alice:hunter2-Pa55@127.0.0.1:{closed_port()}/api")
    problem = prefect_api_problem()
    assert problem.startswith("PREFECT_API_URL http://***@127.0.0.1:") and "hunter2" not in problem
    monkeypatch.delenv("PREFECT_API_URL")
    assert prefect_api_problem() is None
