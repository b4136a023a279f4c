"""Keras training histories as the tables `dvc plots` reads."""

from __future__ import annotations

import pandas as pd


def history_tables(history: dict[str, list[float]]) -> dict[str, pd.DataFrame]:
    """One table per metric with train and validation columns (epoch 1 first)."""
    tables = {}
    for name in (key for key in history if not key.startswith("val_")):
        table = pd.DataFrame({"epoch": range(1, len(history[name]) + 1), "train": history[name]})
        if f"val_{name}" in history:
            table["validation"] = history[f"val_{name}"]
        tables[name] = table
    return tables


def write_history_tables(folder, history: dict[str, list[float]]) -> None:
    """<folder>/<metric>.tsv for each metric, the files dvc.yaml declares as plots."""
    from pathlib import Path

    for name, table in history_tables(history).items():
        table.to_csv(Path(folder) / f"{name}.tsv", sep="\t", index=False)
