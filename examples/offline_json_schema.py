"""Offline generation held to a JSON schema, with no server: `LLM` + `SamplingParams(grammar=...)`.

    python examples/offline_json_schema.py [--model MODEL]

The prompts go through the model's chat template, every one is constrained by the same schema,
and all of them run in one continuous batch. Each output parses and validates.
Prints the last line `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import json
import sys

import jsonschema

from sluicegate.engine import LLM, SamplingParams
from sluicegate.grammars.specs import JsonSchema

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        # bounded, so a small model cannot run away with digits
        "population_millions": {"type": "integer", "minimum": 0, "maximum": 100},
        "is_capital": {"type": "boolean"},
    },
    "required": ["name", "population_millions", "is_capital"],
    "additionalProperties": False,
}
CITIES = ["Paris", "Tokyo", "Sydney"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None, help="HF folder, .gguf file or hub id (default: embedded)")
    args = parser.parse_args()
    llm = LLM(args.model)
    prompts = [llm.tokenizer.apply_chat_template(
        [{"role": "user", "content": f"Describe {city} as JSON: name, population in millions, capital or not."}],
        tokenize=False, add_generation_prompt=True) for city in CITIES]
    params = SamplingParams(max_tokens=64, temperature=0, grammar=JsonSchema.of(SCHEMA))
    records = []
    for city, out in zip(CITIES, llm.generate(prompts, params)):
        if out.finish_reason != "stop":  # cut off by max_tokens: incomplete, never parsed
            raise SystemExit(f"{city}: output cut off ({out.finish_reason}): {out.text!r}")
        record = json.loads(out.text)
        jsonschema.validate(record, SCHEMA)
        print(f"{city}: {record} ({out.finish_reason})")
        records.append(record)
    print("RESULT " + json.dumps({"records": records}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
