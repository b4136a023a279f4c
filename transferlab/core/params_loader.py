"""Reading params.yaml: strict YAML, validation against `Params`, and one-line errors naming the bad key."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from transferlab.core.errors import ParamsError
from transferlab.core.params import Params

DEFAULT_PARAMS_FILE = "params.yaml"


def _describe(error: dict[str, Any], model: type[BaseModel]) -> str:
    """One readable sentence for one pydantic error: the dotted key, what is wrong, what is allowed."""
    key = ".".join(str(part) for part in error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        parent = _section_at(model, error["loc"][:-1])
        allowed = ", ".join(parent.model_fields) if parent else "?"
        return f"{key}: unknown key; allowed keys here: {allowed}"
    value = error.get("input")
    shown = f" (got {value!r})" if not isinstance(value, dict) else ""
    message = error["msg"].removeprefix("Value error, ")
    if kind == "value_error":
        return message if not key or message.startswith(f"{key}.") else f"{key}: {message}"
    return f"{key}: {message}{shown}"


def _first_error(errors: list[dict[str, Any]], model: type[BaseModel]) -> tuple[dict[str, Any], int]:
    """The first error, and how many of `errors` it stands for: pydantic reports a value that fits no member of a
    union (`head.l2: 'probe' | float`) once per member, under a key that ends with the member's type; those become
    one error of the setting's own key that names every form allowed."""
    first, loc = errors[0], errors[0]["loc"]
    section = _section_at(model, loc[:-2]) if len(loc) >= 2 else None
    field = section.model_fields.get(str(loc[-2])) if section else None
    if field is None or typing.get_origin(field.annotation) not in (typing.Union, types.UnionType):
        return first, 1
    members = [error for error in errors if error["loc"][:-1] == loc[:-1]]
    wanted = [error["msg"].removeprefix("Input should be ") for error in members]
    return {**first, "loc": loc[:-1], "msg": "Input should be " + " or ".join(wanted)}, len(members)


def _section_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            return None
        model = field.annotation
    return model


def parse_params(raw: Any, source: str = DEFAULT_PARAMS_FILE) -> Params:
    """Validate an already-loaded params mapping; raise ParamsError naming the first bad key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections at the top level, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        first, merged = _first_error(errors, Params)
        more = f" (and {len(errors) - merged} more)" if len(errors) > merged else ""
        raise ParamsError(f"{source}: {_describe(first, Params)}{more}") from None
    except ParamsError as exc:  # raised by cross-section checks such as the backbone registry
        raise ParamsError(f"{source}: {exc}") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice is an error: PyYAML keeps the last silently, so a second
    `head:` section would hide the first one's values."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_params(path: str | Path = DEFAULT_PARAMS_FILE) -> Params:
    """Read and validate params.yaml."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParamsError(f"{path}: params file not found") from None
    except UnicodeDecodeError as exc:
        raise ParamsError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ParamsError(f"{path}:{where} is not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return parse_params(raw, str(path))
