"""`Section`, the base of every params model: its own module so that paths.py and params.py share it without a cycle."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A params section: unknown keys are errors, values are checked on assignment too, no float setting takes NaN
    or infinity (YAML's .nan and .inf: a silent NaN image, a loss that never ends), and no value is converted
    (strict: `seed: true` is not the seed 1, `epochs: "5"` or `5.0` is not 5; an int is a float)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=True, allow_inf_nan=False, strict=True)
