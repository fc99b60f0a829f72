"""The small real task every example solves: unit conversion, as a tool with an enum-typed schema.

The server's grammar makes every tool call valid under the schema (a number and two known units),
so even the 135M default model drives the tool loop to the end; whether it picks sensible units is
the model's business, and each example prints what it asked for and what the tool answered.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

# length units in metres
FACTORS = {"meter": 1.0, "kilometer": 1000.0, "mile": 1609.344, "foot": 0.3048, "inch": 0.0254}
Unit = Literal["foot", "inch", "kilometer", "meter", "mile"]  # an enum in every generated schema
UNITS = list(get_args(Unit))

QUESTION = "How many miles is 42 kilometers? Use the convert_length tool."

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "value": {"type": "number", "description": "the quantity to convert"},
        "from_unit": {"type": "string", "enum": UNITS},
        "to_unit": {"type": "string", "enum": UNITS},
    },
    "required": ["value", "from_unit", "to_unit"],
    "additionalProperties": False,
}
DESCRIPTION = "Convert a length from one unit to another."


def convert_length(value: float, from_unit: Unit, to_unit: Unit) -> float:
    """Convert a length from one unit to another."""
    return round(float(value) * FACTORS[from_unit] / FACTORS[to_unit], 6)


def openai_tool() -> dict[str, Any]:
    return {"type": "function", "function": {"name": "convert_length", "description": DESCRIPTION,
                                             "parameters": SCHEMA}}


def check_call(args: dict[str, Any]) -> float:
    """Run the tool on a call's arguments, insisting they are what the schema promises."""
    assert set(args) == {"value", "from_unit", "to_unit"}, args
    assert isinstance(args["value"], (int, float)) and args["from_unit"] in FACTORS and args["to_unit"] in FACTORS
    return convert_length(args["value"], args["from_unit"], args["to_unit"])
