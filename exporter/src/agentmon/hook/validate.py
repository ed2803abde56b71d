"""A small JSON Schema validator for hook events, compiled once at import.

``jsonschema`` costs ~60 ms to import, more than the whole budget of a hook process, so this
module interprets exactly the keyword subset that ``hook_schema.json`` uses (draft 2020-12
semantics) and refuses, at compile time, a schema that uses anything else. The tests check that
it agrees with ``jsonschema`` on a corpus of valid and invalid events.
"""

from __future__ import annotations

import json
import os
import re

TYPE_CHECKING = False  # typing costs ~3 ms of import per hook process; only checkers need it
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    # (instance, path) -> None when valid, else a one-line reason
    Check = Callable[[Any, str], str | None]

SCHEMA_PATH = os.path.join(os.path.dirname(__file__), "schema.json")

# Keywords that only annotate; they never affect validity.
ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "title", "description"})
ASSERTIONS = frozenset({
    "type", "enum", "const", "pattern", "minLength", "maxLength", "required", "properties",
    "allOf", "if", "then",
})
SUPPORTED_KEYWORDS = ANNOTATIONS | ASSERTIONS

class SchemaError(ValueError):
    """The schema uses a keyword or value this validator does not interpret."""


def _is_type(value: Any, name: str) -> bool:
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "string":
        return isinstance(value, str)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "null":
        return value is None
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if name == "integer":
        if isinstance(value, bool):
            return False
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    raise SchemaError(f"unknown type {name!r}")


def json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON Schema defines it: 1 == 1.0, but true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def describe(value: Any, limit: int = 40) -> str:
    """A short, single-line rendering of a (possibly hostile) value for error messages."""
    text = repr(value) if isinstance(value, str) else type(value).__name__
    if isinstance(value, str):
        text = text.encode("ascii", "backslashreplace").decode("ascii")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _at(path: str) -> str:
    return path or "event"


def compile_schema(schema: Any) -> Check:
    """Turn a (sub)schema into a check function. Raises SchemaError on unsupported keywords."""
    if not isinstance(schema, dict):
        raise SchemaError(f"only object schemas are supported, not {type(schema).__name__}")
    unknown = set(schema) - SUPPORTED_KEYWORDS
    if unknown:
        raise SchemaError(f"unsupported keyword(s): {', '.join(sorted(unknown))}")
    if "then" in schema and "if" not in schema:
        raise SchemaError("'then' without 'if'")
    checks: list[Check] = []

    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        for name in types:
            _is_type(None, name)  # reject unknown type names at compile time
        wanted = " or ".join(types)

        def check_type(value: Any, path: str) -> str | None:
            if any(_is_type(value, name) for name in types):
                return None
            return f"{_at(path)}: expected {wanted}, got {describe(value)}"

        checks.append(check_type)

    if "enum" in schema:
        options = list(schema["enum"])

        def check_enum(value: Any, path: str) -> str | None:
            if any(json_equal(value, option) for option in options):
                return None
            return f"{_at(path)}: {describe(value)} is not one of the known values"

        checks.append(check_enum)

    if "const" in schema:
        constant = schema["const"]

        def check_const(value: Any, path: str) -> str | None:
            if json_equal(value, constant):
                return None
            return f"{_at(path)}: {describe(value)} is not {describe(constant)}"

        checks.append(check_const)

    if "pattern" in schema:
        regex = re.compile(schema["pattern"])
        allowed = schema.get("description", f"must match {regex.pattern}")

        def check_pattern(value: Any, path: str) -> str | None:
            if not isinstance(value, str) or regex.search(value):
                return None
            return f"{_at(path)}: {describe(value)} is not allowed ({allowed})"

        checks.append(check_pattern)

    if "minLength" in schema:
        minimum = int(schema["minLength"])

        def check_min_length(value: Any, path: str) -> str | None:
            if not isinstance(value, str) or len(value) >= minimum:
                return None
            return f"{_at(path)}: shorter than {minimum} characters"

        checks.append(check_min_length)

    if "maxLength" in schema:
        maximum = int(schema["maxLength"])

        def check_max_length(value: Any, path: str) -> str | None:
            if not isinstance(value, str) or len(value) <= maximum:
                return None
            return f"{_at(path)}: longer than {maximum} characters"

        checks.append(check_max_length)

    if "required" in schema:
        required = list(schema["required"])

        def check_required(value: Any, path: str) -> str | None:
            if not isinstance(value, dict):
                return None
            for name in required:
                if name not in value:
                    return f"{_at(path)}: missing required field {name!r}"
            return None

        checks.append(check_required)

    if "properties" in schema:
        props = {name: compile_schema(sub) for name, sub in schema["properties"].items()}

        def check_properties(value: Any, path: str) -> str | None:
            if not isinstance(value, dict):
                return None
            for name, check in props.items():
                if name in value:
                    problem = check(value[name], f"{path}.{name}" if path else name)
                    if problem:
                        return problem
            return None

        checks.append(check_properties)

    if "allOf" in schema:
        parts = [compile_schema(sub) for sub in schema["allOf"]]

        def check_all_of(value: Any, path: str) -> str | None:
            for part in parts:
                problem = part(value, path)
                if problem:
                    return problem
            return None

        checks.append(check_all_of)

    if "if" in schema:
        condition = compile_schema(schema["if"])
        then = compile_schema(schema["then"]) if "then" in schema else None

        def check_if(value: Any, path: str) -> str | None:
            if then is None or condition(value, path) is not None:
                return None
            return then(value, path)

        checks.append(check_if)

    def check_all(value: Any, path: str) -> str | None:
        for check in checks:
            problem = check(value, path)
            if problem:
                return problem
        return None

    return check_all


def load_schema(path: str = SCHEMA_PATH) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        schema: dict[str, Any] = json.load(handle)
    return schema


SCHEMA = load_schema()
_CHECK = compile_schema(SCHEMA)


def validate(event: Any) -> str | None:
    """None when ``event`` is a valid hook event, else a one-line reason."""
    return _CHECK(event, "")
