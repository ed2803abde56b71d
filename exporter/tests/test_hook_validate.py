"""The hand-written validator agrees with jsonschema on the packaged schema."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest
from hook_events import EVENT_NAMES, event
from hypothesis import given, settings
from hypothesis import strategies as st

from agentmon.hook import validate as hook_validate
from agentmon.hook.validate import (
    SCHEMA,
    SUPPORTED_KEYWORDS,
    SchemaError,
    compile_schema,
    describe,
    json_equal,
    validate,
)

REFERENCE = jsonschema.Draft202012Validator(SCHEMA)

ODD_VALUES: list[Any] = [
    None, True, False, 0, 1, 1.5, -7, "", "x", "a/b", "..", "a b", "abc\n", "a\x00b", "\ufeff",
    "mcp__github__get_issue", "x" * 300, [], ["a"], {}, {"k": "v"},
]


def agree(instance: Any) -> None:
    ours = validate(instance)
    theirs = REFERENCE.is_valid(instance)
    assert (ours is None) == theirs, f"ours={ours!r} jsonschema={theirs} for {instance!r}"


def schemas_in(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """Every (sub)schema of ``schema``, following the keywords that hold schemas."""
    found = [schema]
    for name, sub in schema.get("properties", {}).items():
        assert isinstance(name, str)
        found += schemas_in(sub)
    for sub in schema.get("allOf", []):
        found += schemas_in(sub)
    for key in ("if", "then"):
        if key in schema:
            found += schemas_in(schema[key])
    return found


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"].endswith("/draft/2020-12/schema")


def test_schema_uses_only_keywords_the_validator_interprets() -> None:
    used = set()
    for sub in schemas_in(SCHEMA):
        used |= set(sub)
    assert used <= SUPPORTED_KEYWORDS, used - SUPPORTED_KEYWORDS
    # and nothing is left unvisited: every dict in the file is a schema or a properties map
    assert "additionalProperties" not in json.dumps(SCHEMA)


def test_schema_lists_exactly_the_documented_events() -> None:
    assert SCHEMA["properties"]["hook_event_name"]["enum"] == EVENT_NAMES


@pytest.mark.parametrize("name", EVENT_NAMES)
def test_documented_events_are_valid(name: str) -> None:
    assert validate(event(name)) is None
    agree(event(name))


@pytest.mark.parametrize("name", EVENT_NAMES)
def test_unknown_properties_are_allowed(name: str) -> None:
    instance = event(name, brand_new_field={"nested": [1, 2]}, another=None)
    assert validate(instance) is None
    agree(instance)


def test_mcp_tool_names_pass_and_path_like_values_fail() -> None:
    assert validate(event("PreToolUse", tool_name="mcp__github__get_issue")) is None
    assert validate(event("PreToolUse", tool_name="mcp__my-server__do_thing")) is None
    for bad in ("../etc/passwd", "a/b", "..", "a b", "a\x00", "a\n", "", "\tBash", "Bash\n",
                "x" * 193):
        assert validate(event("PreToolUse", tool_name=bad)) is not None, bad
        assert validate(event("Stop", session=bad)) is not None, bad
        agree(event("PreToolUse", tool_name=bad))
        agree(event("Stop", session=bad))


def test_error_messages_are_one_short_line() -> None:
    problem = validate(event("Stop", session="a\nb" * 100))
    assert problem is not None
    assert "\n" not in problem
    assert len(problem) < 300
    assert problem.startswith("session_id: ")
    assert validate([]) == "event: expected object, got list"
    missing = validate(event("PreToolUse", tool_use_id=None) | {"tool_use_id": 5})
    assert missing == "tool_use_id: expected string, got int"
    no_id = {k: v for k, v in event("PreToolUse").items() if k != "tool_use_id"}
    assert validate(no_id) == "event: missing required field 'tool_use_id'"
    assert "not one of the known values" in str(validate(event("Stop", hook_event_name="Nope")))


def mutations() -> list[Any]:
    """Each documented event with one field removed or replaced by an odd value."""
    out: list[Any] = []
    for name in EVENT_NAMES:
        valid = event(name)
        keys = set(valid) | set(SCHEMA["properties"])
        for key in sorted(keys):
            dropped = {k: v for k, v in valid.items() if k != key}
            out.append(dropped)
            for value in ODD_VALUES:
                changed = copy.deepcopy(valid)
                changed[key] = value
                out.append(changed)
        for other in [*EVENT_NAMES, "Unknown", "pretooluse", ""]:
            out.append({**valid, "hook_event_name": other})
    return out


def test_agrees_with_jsonschema_on_a_mutation_corpus() -> None:
    corpus = mutations()
    assert len(corpus) > 3000
    theirs = [REFERENCE.is_valid(instance) for instance in corpus]  # once each: the slow side
    valid = sum(theirs)
    assert 100 < valid < len(corpus) - 1000  # both sides of the boundary are exercised
    for instance, reference_valid in zip(corpus, theirs, strict=True):
        ours = validate(instance)
        assert (ours is None) == reference_valid, (
            f"ours={ours!r} jsonschema={reference_valid} for {instance!r}")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)
FIELD_VALUES = JSON | st.sampled_from(ODD_VALUES) | st.sampled_from(
    ["sess-1", "toolu_01", "Bash", "Task", "startup", "PreToolUse"])


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from([*sorted(SCHEMA["properties"]), "extra"]),
                       FIELD_VALUES, max_size=8),
       st.sampled_from([*EVENT_NAMES, "Bogus", None]))
def test_agrees_with_jsonschema_on_random_events(fields: dict[str, Any], name: str | None) -> None:
    if name is not None:
        fields = {**fields, "hook_event_name": name}
    agree(fields)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(EVENT_NAMES), st.sampled_from(sorted(SCHEMA["properties"])), JSON)
def test_agrees_with_jsonschema_when_one_field_changes(name: str, key: str, value: Any) -> None:
    agree({**event(name), key: value})


@settings(max_examples=200, deadline=None)
@given(JSON)
def test_agrees_with_jsonschema_on_any_json(value: Any) -> None:
    agree(value)


def test_compile_refuses_keywords_it_does_not_interpret() -> None:
    with pytest.raises(SchemaError, match="unsupported keyword"):
        compile_schema({"type": "object", "additionalProperties": False})
    with pytest.raises(SchemaError, match="'then' without 'if'"):
        compile_schema({"then": {"required": ["a"]}})
    with pytest.raises(SchemaError, match="unknown type"):
        compile_schema({"type": "decimal"})
    with pytest.raises(SchemaError, match="only object schemas"):
        compile_schema(True)


def test_keywords_the_schema_does_not_use_yet_behave_like_json_schema() -> None:
    schema = {"type": ["integer", "number", "array", "null"], "const": 1, "minLength": 2}
    check = compile_schema(schema)
    reference = jsonschema.Draft202012Validator(schema)
    for value in [1, 1.0, True, "1", None, [1], 2, 1.5]:
        assert (check(value, "") is None) == reference.is_valid(value), value
    lone_if = compile_schema({"if": {"const": 1}})
    assert lone_if(1, "") is None
    assert lone_if(2, "") is None
    assert compile_schema({"minLength": 2})("a", "x") == "x: shorter than 2 characters"
    # object keywords ignore other types, as JSON Schema says
    assert compile_schema({"required": ["a"], "properties": {"a": {"const": 1}}})(5, "") is None


def test_json_equal_follows_json_schema_equality() -> None:
    assert json_equal(1, 1.0)
    assert not json_equal(True, 1)
    assert not json_equal(0, False)
    assert json_equal([1, {"a": 2.0}], [1.0, {"a": 2}])
    assert not json_equal([1], [1, 2])
    assert not json_equal({"a": 1}, {"b": 1})
    assert not json_equal("1", 1)
    assert json_equal(None, None)


def test_describe_is_short_and_printable() -> None:
    assert describe("a\x00\n\udc80") == "'a\\x00\\n\\udc80'"
    assert len(describe("x" * 1000)) == 40
    assert describe({"a": 1}) == "dict"


def test_schema_file_ships_in_the_package() -> None:
    assert hook_validate.SCHEMA_PATH.endswith("schema.json")
    assert hook_validate.load_schema() == SCHEMA
