"""The workspace's path catalog: artifact file names, the entries no params path may touch, and `PathsParams`."""

from __future__ import annotations

from pathlib import PurePosixPath

from pydantic import model_validator

from transferlab.core.sections import Section

MODEL_FILE, HEAD_FILE, CLASSES_FILE = "model.keras", "head.keras", "classes.json"
# The output of the `check_params` guard stage, which every other stage descends from. Not a params path: it must
# exist before params are known to be valid.
PARAMS_CHECK_FILE = "data/params_checked.json"

# Top-level entries of the workspace that no params path may name or enter: the repository, DVC's and MLflow's
# stores, the code and the configuration. A stage replaces its output folder whole, so `paths.raw: flows` would
# otherwise overwrite code and `paths.raw: mlartifacts` would delete every logged model.
PROTECTED_ENTRIES = frozenset({
    ".git", ".dvc", ".dvcignore", ".gitignore", ".venv", ".ci", ".github", "mlflow.db", "mlartifacts", "mlruns",
    "transferlab", "stages", "flows", "tests", "bench", "params.yaml", "dvc.yaml", "dvc.lock", "pyproject.toml",
    "Makefile", "README.md", "ARCHITECTURE.md",
})


def overlap(one: PurePosixPath, other: PurePosixPath) -> bool:
    """Whether two workspace paths are the same or one holds the other."""
    return one == other or one in other.parents or other in one.parents


def workspace_relative(value: str, key: str) -> PurePosixPath:
    """`value` as a normalized path inside the workspace, or a ValueError naming `key` and why not."""
    if not value or not value.strip():
        raise ValueError(f"{key}: must be a folder inside the workspace, got an empty path")
    path = PurePosixPath(value.replace("\\", "/"))
    if path.is_absolute() or value.startswith("~") or (len(value) > 1 and value[1] == ":"):
        raise ValueError(f"{key}: {value!r} is absolute; give a path relative to the workspace (e.g. data/raw)")
    if ".." in path.parts:
        raise ValueError(f"{key}: {value!r} leaves the workspace ('..'); give a path inside it")
    if not path.parts or path == PurePosixPath("."):
        raise ValueError(f"{key}: {value!r} is the workspace itself; give a folder inside it (e.g. data/raw)")
    if path.parts[0] in PROTECTED_ENTRIES:
        raise ValueError(f"{key}: {value!r} is inside {path.parts[0]!r}, which belongs to the project "
                         f"(code, Git, DVC or MLflow); choose another folder")
    check_file = PurePosixPath(PARAMS_CHECK_FILE)
    if overlap(path, check_file):  # a folder beside it, below data/, is fine
        raise ValueError(f"{key}: {value!r} would hold {PARAMS_CHECK_FILE}, the output of the check_params stage; "
                         f"choose a folder below it (e.g. {value.rstrip('/')}/raw)")
    return path


class PathsParams(Section):
    """Every on-disk location of the pipeline, relative to the project root.

    The folders are params; the artifacts inside them are named once, below, and used by stages, predict,
    the CLI and flows alike. dvc.yaml templates the same values (tests/test_dvc_yaml.py holds them equal)."""

    raw: str = "data/raw"
    prepared: str = "data/prepared"
    features: str = "data/features"
    models: str = "models"
    metrics: str = "metrics"
    plots: str = "plots"
    reports: str = "reports"
    scratch: str = ".cache/transferlab"  # resumable partial work; never a DVC output

    @model_validator(mode="after")
    def _paths_stay_apart(self) -> "PathsParams":
        """Every folder inside the workspace, off the project's own files, and no folder inside another."""
        folders = {key: workspace_relative(getattr(self, key), f"paths.{key}") for key in type(self).model_fields}
        for key, path in folders.items():
            for other, other_path in folders.items():
                if key < other and overlap(path, other_path):
                    raise ValueError(f"paths.{key} ({str(path)!r}) and paths.{other} ({str(other_path)!r}) overlap; "
                                     f"each stage replaces its folder whole, so they must be separate folders")
        return self

    # One backbone's share of the per-backbone stages (extract_features@<name>, train_head@<name>).
    def features_of(self, backbone: str) -> str:
        return f"{self.features}/{backbone}"

    def head_of(self, backbone: str) -> str:
        return f"{self.models}/head/{backbone}"

    def head_model_of(self, backbone: str) -> str:
        return f"{self.head_of(backbone)}/{HEAD_FILE}"

    def head_metrics_of(self, backbone: str) -> str:
        return f"{self.metrics}/train_head/{backbone}.json"

    def head_plots_of(self, backbone: str) -> str:
        return f"{self.plots}/train_head/{backbone}"

    @property
    def fine_tuned(self) -> str:
        """The whole fine-tuned model: model.keras and classes.json."""
        return f"{self.models}/fine_tuned"

    @property
    def fine_tuned_model(self) -> str:
        return f"{self.fine_tuned}/{MODEL_FILE}"

    @property
    def fine_tune_metrics(self) -> str:
        return f"{self.metrics}/fine_tune.json"

    @property
    def fine_tune_plots(self) -> str:
        return f"{self.plots}/fine_tune"

    @property
    def evaluate_metrics(self) -> str:
        return f"{self.metrics}/evaluate.json"

    @property
    def summary_metrics(self) -> str:
        """The headline figures of a run, one flat file: what `dvc exp show` compares first."""
        return f"{self.metrics}/summary.json"

    @property
    def adversarial_metrics(self) -> str:
        return f"{self.metrics}/adversarial.json"

    @property
    def evaluate_per_class(self) -> str:
        return f"{self.metrics}/evaluate_per_class.csv"

    @property
    def evaluate_plots(self) -> str:
        return f"{self.plots}/evaluate"

    @property
    def data_report(self) -> str:
        """The data report on the embeddings: report.md, report.html, images/ and its findings as CSV."""
        return f"{self.reports}/data"

    @property
    def data_metrics(self) -> str:
        return f"{self.metrics}/data.json"

    @property
    def adversarial_report(self) -> str:
        """report.md, report.html, metrics.json, sweep.tsv and images/."""
        return f"{self.reports}/adversarial"
