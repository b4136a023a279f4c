"""Data sources that download or import into the raw layout: folders, labels tables, TensorFlow Datasets,
synthetic."""

from __future__ import annotations

from pathlib import Path

from transferlab.core.errors import DataError
from transferlab.core.params import DataParams
from transferlab.core.wording import plural
from transferlab.data.raw_layout import IMAGES_DIR, UNSPLIT, SourceInfo


def fetch_source(data: DataParams, seed: int, root: Path, target: Path, scratch: Path | None = None) -> SourceInfo:
    """Write the configured source into the raw layout at `target`; paths in params are relative to `root`.
    `scratch` keeps what a killed run fetched for its rerun (a table's objects in a store)."""
    if data.source == "synthetic":
        from transferlab.data.sources.synthetic import write_synthetic_folder

        cfg = data.synthetic
        write_synthetic_folder(target / IMAGES_DIR / UNSPLIT, cfg.num_classes, cfg.images_per_class, cfg.image_size,
                               seed)
        return SourceInfo("synthetic",
                          f"synthetic: {plural(cfg.num_classes, 'class')} x {plural(cfg.images_per_class, 'image')}")
    if data.source == "folder":
        from transferlab.data.sources.folder import import_folder

        return import_folder(root / data.folder.root, target, data.folder.unlisted)
    if data.source == "table":
        from transferlab.data.sources.table import import_table

        return import_table(data.table, root, target, scratch)
    from transferlab.data.sources.tfds_source import import_tfds

    return import_tfds(data.tfds.model_copy(update={"data_dir": str(root / data.tfds.data_dir)}), target)


def known_classes(data: DataParams, root: Path) -> list[dict]:
    """The classes ({index, name, species}) the source will give, numbered as preprocess numbers them, known
    before anything is downloaded or copied: check_params refuses data of fewer than two classes, and an
    adversarial target none of them matches."""
    if data.source == "synthetic":
        from transferlab.data.sources.synthetic import class_names

        species = dict.fromkeys(class_names(data.synthetic.num_classes))
    elif data.source == "folder":
        from transferlab.data.sources.folder import folder_classes

        species = folder_classes(root / str(data.folder.root))
    elif data.source == "table":
        from transferlab.data.sources.table import table_labels

        species = dict.fromkeys(table_labels(data.table, root))
    else:
        from transferlab.data.sources.tfds_source import tfds_species

        species = tfds_species(data.tfds.name)
    if len(species) < 2:
        raise DataError(f"data.source {data.source}: the data has {plural(len(species), 'class')} "
                        f"{sorted(species)[:1]}; a classifier needs at least two")
    return [{"index": index, "name": name, "species": species[name]} for index, name in enumerate(sorted(species))]
