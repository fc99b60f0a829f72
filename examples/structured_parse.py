"""Typed output: a pydantic model as the response format, parsed by `client.chat.completions.parse`.

    python examples/structured_parse.py --base-url http://127.0.0.1:8000/v1

The openai client turns the pydantic class into a strict JSON schema; the server's grammar holds
every generated token to it, so `message.parsed` is a validated `Conversion`, not a hope.
Prints the last line `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from openai import OpenAI
from pydantic import BaseModel, Field

sys.path.insert(0, str(Path(__file__).resolve().parent))
from units import Unit, convert_length  # noqa: E402


class Conversion(BaseModel):
    value: float = Field(description="the quantity to convert")
    from_unit: Unit
    to_unit: Unit


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--api-key", default="unused")
    args = parser.parse_args()
    client = OpenAI(base_url=args.base_url, api_key=args.api_key)
    model = client.models.list().data[0].id
    completion = client.chat.completions.parse(
        model=model, response_format=Conversion, temperature=0, max_tokens=64,
        messages=[{"role": "system", "content": "Extract the unit conversion the user asks for."},
                  {"role": "user", "content": "How many miles is 42 kilometers?"}])
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Conversion), completion
    result = convert_length(parsed.value, parsed.from_unit, parsed.to_unit)
    print(f"{parsed!r} -> {result}")
    print("RESULT " + json.dumps({"parsed": parsed.model_dump(), "result": result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
