"""What the flow reads from DVC's output and how it passes overrides: no Prefect, no DVC run needed."""

from flows.orchestration import CACHED, RAN, outcomes, override_arguments


def test_outcomes_are_read_from_dvc_output():
    text = "Running stage 'train_head':\nStage 'download' didn't change, skipping\nStage 'x' is cached - skipping"
    assert outcomes(text, ["download", "train_head", "x", "y"]) == {"download": CACHED, "train_head": RAN, "x": CACHED}
    assert outcomes("Running stage 'extract_features@vgg16':", ["extract_features"]) == {"extract_features": RAN}


def test_overrides_become_dvc_exp_arguments_in_yaml():
    assert override_arguments({"head.dropout": 0.3, "adversarial.epsilons": [0, 2], "data.folder.root": None}) == \
        ["-S", "adversarial.epsilons=[0, 2]", "-S", "data.folder.root=null", "-S", "head.dropout=0.3"]
