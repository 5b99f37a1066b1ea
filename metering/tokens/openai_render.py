"""How OpenAI renders function definitions into the prompt, as publicly reverse engineered.

OpenAI turns the JSON-schema ``tools``/``functions`` of a request into a
TypeScript-like namespace in the system message (the rendering documented by
hmarr/openai-chat-tokens and its forks, checked there and here against
API-reported counts)::

    namespace functions {

    // Get the current weather in a given location
    type get_current_weather = (_: {
    // The city and state, e.g. San Francisco, CA
    location: string,
    unit?: "celsius" | "fahrenheit",
    }) => any;

    } // namespace functions

Property descriptions are rendered for the top level and the first nested
level only; nested objects are indented by two spaces per level.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

_MAX_RENDER_DEPTH = 48
_NESTED_DESCRIPTION_INDENT = 2


def render_functions(functions: Sequence[Mapping[str, Any]]) -> str:
    """The namespace text for a list of ``{"name", "description", "parameters"}`` dicts."""
    lines = ["namespace functions {", ""]
    for function in functions:
        name = _text(function.get("name"))
        description = _text(function.get("description"))
        if description:
            lines.extend(f"// {row}" for row in description.split("\n"))
        parameters = function.get("parameters")
        properties = parameters.get("properties") if isinstance(parameters, Mapping) else None
        if isinstance(parameters, Mapping) and isinstance(properties, Mapping) and properties:
            lines.append(f"type {name} = (_: {{")
            lines.append(_object_properties(parameters, 0, 0))
            lines.append("}) => any;")
        else:
            lines.append(f"type {name} = () => any;")
        lines.append("")
    lines.append("} // namespace functions")
    return "\n".join(lines)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _object_properties(schema: Mapping[str, Any], indent: int, depth: int) -> str:
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return ""
    required = schema.get("required")
    required_names = set(required) if isinstance(required, list) else set()
    lines: list[str] = []
    for key, prop in properties.items():
        prop_map: Mapping[str, Any] = prop if isinstance(prop, Mapping) else {}
        description = _text(prop_map.get("description"))
        if description and indent < _NESTED_DESCRIPTION_INDENT:
            lines.extend(f"// {row}" for row in description.split("\n"))
        optional = "" if key in required_names else "?"
        lines.append(f"{key}{optional}: {_type(prop_map, indent, depth + 1)},")
    return "\n".join(" " * indent + line for line in lines)


def _literal(value: object) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _type(schema: Mapping[str, Any], indent: int, depth: int) -> str:
    if depth > _MAX_RENDER_DEPTH:
        return "any"
    for union_key in ("anyOf", "oneOf"):
        options = schema.get(union_key)
        if isinstance(options, list) and options:
            return " | ".join(
                _type(option if isinstance(option, Mapping) else {}, indent, depth + 1)
                for option in options
            )
    kind = schema.get("type")
    if isinstance(kind, list):
        return (
            " | ".join(
                _type({**schema, "type": item}, indent, depth + 1)
                for item in kind
                if isinstance(item, str)
            )
            or "any"
        )
    enum = schema.get("enum")
    if isinstance(enum, list) and enum and kind in (None, "string", "number", "integer"):
        return " | ".join(_literal(item) for item in enum)
    if kind == "string":
        return "string"
    if kind in ("number", "integer"):
        return "number"
    if kind == "boolean":
        return "boolean"
    if kind == "null":
        return "null"
    if kind == "object":
        return "\n".join(["{", _object_properties(schema, indent + 2, depth + 1), "}"])
    if kind == "array":
        items = schema.get("items")
        if isinstance(items, Mapping):
            return f"{_type(items, indent, depth + 1)}[]"
        return "any[]"
    if "const" in schema:
        return _literal(schema["const"])
    return "any"


def compact_json(value: object) -> str:
    """JSON without spaces, keys in their given order, non-ASCII kept."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
