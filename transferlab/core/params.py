"""The validated schema of params.yaml: every section's keys, defaults, ranges and cross-section checks."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Literal

from pydantic import Field, field_validator, model_validator

from transferlab.core.backbones import check_config, spec_for
from transferlab.core.errors import ParamsError
from transferlab.core.paths import PathsParams, overlap, workspace_relative
from transferlab.core.sections import Section


class BaseParams(Section):
    seed: int = Field(42, ge=0, le=2**31 - 1)


class TfdsParams(Section):
    name: Literal["oxford_iiit_pet", "cats_vs_dogs"] = "oxford_iiit_pet"
    data_dir: str = ".cache/tensorflow_datasets"  # TFDS' own download cache: relative (in the workspace) or absolute
    manual_dir: str | None = None
    download_timeout_s: float = Field(20.0, gt=0, le=3600)


class FolderParams(Section):
    root: str | None = None
    # Oxford-IIIT layout: images not in trainval.txt/test.txt are left out ("skip") or added to training.
    unlisted: Literal["skip", "train"] = "skip"


class TableParams(Section):
    """Images listed in a labels table (CSV, TSV or Parquet): Hugging Face `metadata.csv`, Kaggle `labels.csv`,
    fastai's `from_csv`. Column names are params; a row without a file or label is reported, never dropped silently."""

    path: str | None = None  # the table: .csv, .tsv, .parquet
    images: str | None = None  # the folder its file column is relative to (default: the table's own folder)
    file_column: str = Field("file_name", min_length=1)  # HF metadata.csv: file_name; Kaggle labels.csv: id
    label_column: str = Field("label", min_length=1)  # Kaggle dog breeds: breed
    suffix: str = ""  # appended to each file value, e.g. .jpg for Kaggle's bare ids
    split_column: str | None = None  # train/validation/test (or val, valid, test...), or a boolean like is_valid

    @model_validator(mode="after")
    def _columns_differ(self) -> "TableParams":
        named = [self.file_column, self.label_column] + ([self.split_column] if self.split_column else [])
        if len(set(named)) < len(named):
            raise ValueError(f"data.table: file_column, label_column and split_column must name different columns "
                             f"(got {named})")
        return self


class SyntheticParams(Section):
    num_classes: int = Field(3, ge=2, le=20)
    images_per_class: int = Field(40, ge=1, le=100_000)
    image_size: int = Field(64, ge=8, le=1024)


class DataParams(Section):
    source: Literal["tfds", "folder", "table", "synthetic"] = "tfds"
    tfds: TfdsParams = TfdsParams()
    folder: FolderParams = FolderParams()
    table: TableParams = TableParams()
    synthetic: SyntheticParams = SyntheticParams()
    image_size: int = Field(224, ge=32, le=1024)
    resize: Literal["squash", "center_crop"] = "squash"
    # an image may decode to at most (max_image_scale x image_size)^2 pixels (JPEGs after their reduced-scale
    # decode); a larger one (a decompression bomb, a huge scan) is left out with its reason, and refused by the
    # served model. The same default as transferlab/data/images.py's DEFAULT_MAX_SCALE
    max_image_scale: int = Field(16, ge=2, le=64)
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    shard_size: int = Field(512, ge=1, le=100_000)
    jpeg_quality: int = Field(95, ge=50, le=100)
    num_workers: int = Field(0, ge=0, le=256)  # 0: one per CPU core
    # the data report stops the pipeline when more than this fraction of the test split has a near-duplicate in
    # train; None: it only reports
    gate: float | None = Field(None, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _source_is_configured(self) -> "DataParams":
        if self.source == "folder" and not self.folder.root:
            raise ValueError("data.folder.root: required when data.source is 'folder'")
        if self.source == "table" and not self.table.path:
            raise ValueError("data.table.path: required when data.source is 'table' (a .csv, .tsv or .parquet file)")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError("data.val_fraction + data.test_fraction: must add up to less than 1")
        return self


class BackboneParams(Section):
    name: str = "mobilenet_v2"  # checked against the registry in transferlab.core.backbones
    alpha: float = Field(1.0, gt=0, le=2.0)
    weights: str = Field("imagenet", min_length=1)  # imagenet | none | path to a weights file
    pooling: Literal["avg", "max"] = "avg"
    dtype: Literal["float32", "float16"] = "float32"  # of the cached features
    batch_size: int = Field(32, ge=1, le=4096)


class ExtractParams(Section):
    """Where extract_features runs; its output and cache key do not depend on it, so no DVC stage lists it."""

    workers: int = Field(0, ge=0, le=1024)  # 0: in the stage's own process; N: a local Ray cluster of N workers
    cluster_address: str | None = None  # an existing Ray cluster (ray://host:10001 or host:6379); also RAY_ADDRESS
    shards_per_task: int = Field(4, ge=1, le=10_000)  # prepared shards one cluster task extracts


class CompareParams(Section):
    """Backbones put side by side: each gets its own feature cache and head (DVC `foreach` stages)."""

    backbones: list[str] = Field(["mobilenet_v2"], min_length=1)  # must include backbone.name
    # Weights of the other backbones (imagenet | none | path); default backbone.weights unless that is a file.
    weights: dict[str, str] = {}
    # Width multiplier of the other MobileNet-family backbones (default backbone.alpha), e.g. {mobilenet: 0.25}
    alpha: dict[str, float] = {}

    @model_validator(mode="after")
    def _names_are_unique(self) -> "CompareParams":
        repeated = sorted({name for name in self.backbones if self.backbones.count(name) > 1})
        if repeated:
            raise ValueError(f"compare.backbones: {repeated[0]!r} is listed twice")
        stray = sorted(set(self.weights) - set(self.backbones))
        if stray:
            raise ValueError(f"compare.weights.{stray[0]}: not in compare.backbones {self.backbones}")
        stray = sorted(set(self.alpha) - set(self.backbones))
        if stray:
            raise ValueError(f"compare.alpha.{stray[0]}: not in compare.backbones {self.backbones}")
        return self


class HeadParams(Section):
    hidden_units: int = Field(0, ge=0, le=8192)  # 0: no hidden layer
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    # L2 on the output layer's kernel: a number, or "probe": the strength the linear probe's cross-validation on
    # the training split chose (1 / (2 C n), sklearn's C in Keras' terms)
    l2: Literal["probe"] | float = Field("probe")
    normalize: bool = True  # standardize features with statistics of the training split
    activation: Literal["auto", "softmax", "sigmoid"] = "auto"  # auto: sigmoid for two classes
    learning_rate: float = Field(1e-3, gt=0, le=1.0)
    batch_size: int = Field(64, ge=1, le=65536)
    epochs: int = Field(300, ge=1, le=10_000)
    patience: int = Field(20, ge=1, le=1000)

    @field_validator("l2")
    @classmethod
    def _l2_not_negative(cls, value):
        if not isinstance(value, str) and not 0.0 <= value <= 10.0:
            raise ValueError(f"{value} is outside 0 to 10")
        return value


class AdversarialTrainingParams(Section):
    """Adversarial fine-tuning: off while epsilon is 0."""

    epsilon: float = Field(0.0, ge=0.0, le=64.0)  # L-inf budget, pixels out of 255
    steps: int = Field(3, ge=1, le=100)  # PGD steps per training batch (random start)
    step_factor: float = Field(2.5, gt=0, le=100)  # step = step_factor * epsilon / steps
    fraction: float = Field(0.5, gt=0.0, le=1.0)  # of each batch replaced by its adversarial images


class FineTuneParams(Section):
    unfreeze_top: int = Field(20, ge=0, le=10_000)  # top backbone layers with weights; BatchNorm stays frozen
    learning_rate: float = Field(1e-5, gt=0, le=1e-2)
    schedule: Literal["constant", "cosine"] = "constant"  # cosine: decays to 0 over the epochs after warm-up
    warmup_epochs: int = Field(0, ge=0, le=1000)  # the rate ramps up from 0 over these epochs first
    epochs: int = Field(5, ge=1, le=1000)
    batch_size: int = Field(32, ge=1, le=4096)
    patience: int = Field(2, ge=1, le=1000)
    # when the best epoch's weights replace the head-only start: a validation-loss gain beyond the noise, or any gain
    accept: Literal["beyond_noise", "any_gain"] = "beyond_noise"
    flip: bool = True
    # the saved model averages each image's logits with its mirror image's; auto: when that lowers validation loss
    flip_tta: Literal["auto"] | bool = "auto"
    rotation: float = Field(0.05, ge=0.0, le=0.5)  # fraction of a full turn
    zoom: float = Field(0.1, ge=0.0, lt=1.0)
    adversarial: AdversarialTrainingParams = AdversarialTrainingParams()


class EvaluateParams(Section):
    top_k: int = Field(3, ge=1, le=100)  # reported when the task has more than 2 classes
    gallery_size: int = Field(16, ge=0, le=256)
    gradcam_per_class: int = Field(2, ge=0, le=32)  # right test images per class in the Grad-CAM figure; 0: none
    registered_model: str = Field("transferlab", min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    min_accuracy: float = Field(0.8, ge=0.0, le=1.0)  # absolute bar for becoming champion
    max_regression: float = Field(0.01, ge=0.0, le=1.0)  # allowed drop below the current champion
    # allowed drop of one class's recall below the champion's, when also beyond that class's noise; null: off
    max_class_regression: float | None = Field(0.1, ge=0.0, le=1.0)
    min_class_recall: float | None = Field(None, ge=0.0, le=1.0)  # every class at least this recall; null: off
    min_test_images: int = Field(30, ge=0, le=1_000_000)  # a smaller test split promotes nothing: too few to judge
    release_images: int = Field(8, ge=0, le=1000)  # test images a release posts to the served champion


class ImagenetParams(Section):
    """An optional full ImageNet classifier for the seed's top-5 replication and an ImageNet ideal image."""

    weights: str | None = None  # a with-top weights file; null skips the ImageNet part
    backbone: Literal["mobilenet", "mobilenet_v2"] = "mobilenet"
    alpha: float = Field(0.25, gt=0, le=1.4)
    class_index: str | None = None  # imagenet_class_index.json
    target_class: int = Field(284, ge=0, lt=1000)  # Siamese cat


class AdversarialParams(Section):
    # auto: species:cat where the classes hold cats and others, else the first class; a class name; species:<name>
    target: str = Field("auto", min_length=1)
    num_images: int = Field(32, ge=1, le=100_000)
    epsilons: list[float] = Field(default_factory=lambda: [0.0, 0.5, 1.0, 2.0, 4.0, 8.0])  # out of 255
    steps: int = Field(10, ge=1, le=10_000)
    step_factor: float = Field(2.5, gt=0, le=100)  # PGD step = step_factor * epsilon / steps
    batch_size: int = Field(16, ge=1, le=4096)
    replication_image: str | None = None  # default: the first correctly classified non-target test image
    replication_steps: int = Field(100, ge=1, le=100_000)
    # step * d log p / d pixel is a pixel change; at 1e5 one step already saturates every pixel whose gradient tops
    # 0.003 (the lesson used 1000), and much larger steps overflow float32 into a NaN image
    replication_step_size: float = Field(1000.0, gt=0, le=1e5)
    ideal_steps: int = Field(150, ge=1, le=100_000)
    ideal_learning_rate: float = Field(2.0, gt=0, le=255)
    # lambda; the report also runs lambda = 0 beside it. At 100 the TV term of the noise start (~20 pixels) outweighs
    # any cross-entropy a hundredfold: the image only flattens
    ideal_tv_weight: float = Field(0.1, gt=0, le=100)
    ideal_snapshot_every: int = Field(50, ge=1, le=100_000)  # steps; ideal_steps caps at 100,000 too
    imagenet: ImagenetParams = ImagenetParams()

    @model_validator(mode="after")
    def _epsilons_are_a_budget(self) -> "AdversarialParams":
        if not self.epsilons:
            raise ValueError("adversarial.epsilons: must list at least one budget (pixels out of 255)")
        bad = [e for e in self.epsilons if not 0 <= e <= 255]
        if bad:
            raise ValueError(f"adversarial.epsilons: {bad[0]} is outside 0..255 (pixels out of 255)")
        return self


class MlflowParams(Section):
    experiment: str = Field("transferlab", min_length=1)


class Params(Section):
    base: BaseParams = BaseParams()
    paths: PathsParams = PathsParams()
    data: DataParams = DataParams()
    backbone: BackboneParams = BackboneParams()
    extract: ExtractParams = ExtractParams()
    compare: CompareParams = CompareParams()
    head: HeadParams = HeadParams()
    fine_tune: FineTuneParams = FineTuneParams()
    evaluate: EvaluateParams = EvaluateParams()
    adversarial: AdversarialParams = AdversarialParams()
    mlflow: MlflowParams = MlflowParams()

    @model_validator(mode="after")
    def _download_cache_apart(self) -> "Params":
        """TFDS writes its cache itself: absolute is the user's choice; relative must keep off outputs and code."""
        data_dir = self.data.tfds.data_dir
        if PurePosixPath(data_dir).is_absolute() or data_dir.startswith("~"):
            return self
        cache = workspace_relative(data_dir, "data.tfds.data_dir")
        for key in type(self.paths).model_fields:
            folder = PurePosixPath(getattr(self.paths, key))
            if overlap(cache, folder):
                raise ValueError(f"data.tfds.data_dir ({data_dir!r}) and paths.{key} ({str(folder)!r}) overlap")
        return self

    @model_validator(mode="after")
    def _backbone_fits(self) -> "Params":
        check_config(self.backbone.name, self.backbone.alpha, self.data.image_size)
        compare, primary = self.compare, self.backbone.name
        if primary not in compare.backbones:
            raise ValueError(f"compare.backbones: must include backbone.name {primary!r}, the backbone that is "
                             f"fine-tuned (got {compare.backbones})")
        for key, given in (("weights", compare.weights), ("alpha", compare.alpha)):
            if primary in given:
                raise ValueError(f"compare.{key}.{primary}: the fine-tuned backbone's {key} is backbone.{key}")
        for name in compare.alpha:
            if not _takes_alpha(name):
                raise ValueError(f"compare.alpha.{name}: {name} has no width multiplier (MobileNet families only)")
        for name in compare.backbones:
            if name == primary:
                continue
            spec = check_config(name, self._alpha_of(name), self.data.image_size, key=f"compare.backbones[{name}]")
            if name not in compare.weights and self.backbone.weights not in ("imagenet", "none"):
                raise ValueError(f"compare.weights.{name}: required, because backbone.weights is a file for "
                                 f"{primary}; give imagenet, none or a {spec.name} weights file")
        return self

    def backbone_named(self, name: str) -> BackboneParams:
        """One compared backbone's settings. They depend on nothing but its name and the shared keys (alpha
        for the MobileNet families, pooling, dtype), so switching the fine-tuned backbone re-extracts nothing."""
        if name not in self.compare.backbones:
            raise ParamsError(f"--backbone: {name!r} is not in compare.backbones {self.compare.backbones}")
        weights = self.compare.weights.get(name, self.backbone.weights)
        return self.backbone.model_copy(update={"name": name, "alpha": self._alpha_of(name), "weights": weights})

    def _alpha_of(self, name: str) -> float:
        if not _takes_alpha(name):
            return 1.0
        return self.backbone.alpha if name == self.backbone.name else self.compare.alpha.get(name, self.backbone.alpha)


def _takes_alpha(name: str) -> bool:
    return spec_for(name, key="compare.backbones").takes_alpha
