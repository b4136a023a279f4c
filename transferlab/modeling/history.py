"""Keras training histories as the tables `dvc plots` reads."""

from __future__ import annotations

import pandas as pd


def history_tables(history: dict[str, list[float]], baseline: dict[str, float] | None = None) -> dict[str, pd.DataFrame]:
    """One table per metric with train and validation columns (epoch 1 first), and a constant `head_only` column
    where `baseline` gives the starting point's validation figure (fine-tuning is judged against it)."""
    tables = {}
    for name in (key for key in history if not key.startswith("val_")):
        table = pd.DataFrame({"epoch": range(1, len(history[name]) + 1), "train": history[name]})
        if f"val_{name}" in history:
            table["validation"] = history[f"val_{name}"]
        if baseline and name in baseline:
            table["head_only"] = baseline[name]
        tables[name] = table
    return tables


def write_history_tables(folder, history: dict[str, list[float]], baseline: dict[str, float] | None = None) -> None:
    """<folder>/<metric>.tsv for each metric, the files dvc.yaml's plots read."""
    from pathlib import Path

    for name, table in history_tables(history, baseline).items():
        table.to_csv(Path(folder) / f"{name}.tsv", sep="\t", index=False)
