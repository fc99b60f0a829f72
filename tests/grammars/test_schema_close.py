"""Tool arguments are closed objects unless the tool's author says otherwise."""

from __future__ import annotations

from sluicegate.grammars.schema_close import close_objects


def test_objects_with_properties_are_closed_at_every_level() -> None:
    schema = {"type": "object", "properties": {
        "a": {"type": "object", "properties": {"b": {"type": "string"}}},
        "list": {"type": "array", "items": {"type": "object", "properties": {"c": {"type": "integer"}}}},
        "either": {"anyOf": [{"type": "object", "properties": {"d": {}}}, {"type": "null"}]}},
        "$defs": {"e": {"type": "object", "properties": {}}}}
    closed = close_objects(schema)
    assert closed["additionalProperties"] is False
    assert closed["properties"]["a"]["additionalProperties"] is False
    assert closed["properties"]["list"]["items"]["additionalProperties"] is False
    assert closed["properties"]["either"]["anyOf"][0]["additionalProperties"] is False
    assert closed["$defs"]["e"]["additionalProperties"] is False
    assert "additionalProperties" not in schema  # the caller's schema is not changed


def test_what_the_author_wrote_is_kept() -> None:
    assert close_objects({"properties": {}, "additionalProperties": True})["additionalProperties"] is True
    typed = {"properties": {}, "additionalProperties": {"type": "integer"}}
    assert close_objects(typed)["additionalProperties"] == {"type": "integer"}
    assert "additionalProperties" not in close_objects({"type": "object"})  # says nothing of its keys
    assert "additionalProperties" not in close_objects({"properties": {}, "patternProperties": {"^x": {}}})
    # allOf branches share their keys: closing one would refuse the other's
    merged = close_objects({"allOf": [{"properties": {"a": {}}}, {"properties": {"b": {}}}]})
    assert all("additionalProperties" not in part for part in merged["allOf"])
    # a property *named* "properties" is a property, not the keyword
    named = close_objects({"type": "object", "properties": {"properties": {"type": "string"}}})
    assert named["properties"]["properties"] == {"type": "string"}
