"""Check a backend against JSON-schema test files (JSONSchemaBench/MaskBench layout).

Each line of a file: {"id", "description", "features", "schema", "tests": [{"valid", "data"}]}.
For a schema: compile (a GrammarError = not covered); then each instance is serialized compactly,
tokenized, and walked token by token through a fresh matcher, checking at every step that the
bitmask allows the token and the matcher accepts it, and at the end that EOS is allowed and
accepted. A valid instance must walk through; an invalid one must be stopped somewhere.
Used by tests/grammars and bench/grammar_bench.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sluicegate.grammars.backend import Grammar, GrammarBackend, GrammarError, allocate_bitmask
from sluicegate.grammars.bitmask import token_allowed
from sluicegate.grammars.specs import JsonSchema

RUNTIME_ERROR = "grammar failed at run time"


@dataclass(frozen=True)
class Walk:
    accepted: bool  # every token allowed + accepted, and EOS allowed + accepted at the end
    where: str  # why not (empty when accepted)
    mask_seconds: list[float]  # one entry per fill_bitmask call


@dataclass
class SchemaResult:
    id: str
    compiled: bool
    error: str = ""
    compile_seconds: float = 0.0
    valid_accepted: int = 0
    valid_rejected: list[str] = field(default_factory=list)  # "test#i: where"
    invalid_rejected: int = 0
    invalid_accepted: list[str] = field(default_factory=list)  # a real failure: unsafe mask
    mask_seconds: list[float] = field(default_factory=list)


def read_cases(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


def compact(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def walk(grammar: Grammar, token_ids: list[int], eos_id: int, bitmask: torch.Tensor) -> Walk:
    """Feed token_ids then EOS through a fresh matcher, checking the mask at every step."""
    matcher = grammar.matcher()
    timings: list[float] = []
    for position, token_id in enumerate([*token_ids, eos_id]):
        if matcher.is_terminated():  # the engine ends the request here: fine only at the end
            if position == len(token_ids):
                return Walk(True, "", timings)
            return Walk(False, f"terminated before token #{position}", timings)
        start = time.perf_counter()
        matcher.fill_bitmask(bitmask, 0)
        timings.append(time.perf_counter() - start)
        failure = matcher.error() if hasattr(matcher, "error") else None
        if failure:
            return Walk(False, f"{RUNTIME_ERROR} at token #{position}: {failure.splitlines()[0]}", timings)
        if not token_allowed(bitmask, 0, token_id):
            return Walk(False, f"token #{position} ({token_id}) masked out", timings)
        if not matcher.accept_token(token_id):
            return Walk(False, f"token #{position} ({token_id}) allowed by the mask but rejected", timings)
    return Walk(True, "", timings)


def check_case(
    backend: GrammarBackend, tokenizer: Any, case: dict[str, Any], vocab_size: int, max_tests: int | None = None
) -> SchemaResult:
    result = SchemaResult(id=str(case.get("id", "")), compiled=False)
    start = time.perf_counter()
    try:
        grammar = backend.compile(JsonSchema.of(case["schema"]))
    except GrammarError as exc:
        result.error = exc.message
        result.compile_seconds = time.perf_counter() - start
        return result
    result.compile_seconds = time.perf_counter() - start
    result.compiled = True
    eos_id = int(tokenizer.eos_token_id)
    bitmask = allocate_bitmask(1, vocab_size)
    for i, test in enumerate(case.get("tests", [])[:max_tests]):
        ids = tokenizer.encode(compact(test["data"]), add_special_tokens=False)
        outcome = walk(grammar, ids, eos_id, bitmask)
        result.mask_seconds += outcome.mask_seconds
        if test["valid"] and outcome.accepted:
            result.valid_accepted += 1
        elif test["valid"]:
            result.valid_rejected.append(f"test#{i}: {outcome.where}")
        elif outcome.accepted:
            result.invalid_accepted.append(f"test#{i}: {compact(test['data'])[:200]}")
        else:
            result.invalid_rejected += 1
    return result


@dataclass
class FileSummary:
    name: str
    schemas: int = 0
    compiled: int = 0
    tests: int = 0
    tests_right: int = 0  # valid accepted + invalid rejected, over compiled schemas
    invalid_accepted: int = 0
    valid_rejected: int = 0
    compile_seconds: list[float] = field(default_factory=list)
    mask_seconds: list[float] = field(default_factory=list)

    def add(self, result: SchemaResult) -> None:
        self.schemas += 1
        self.compile_seconds.append(result.compile_seconds)
        if not result.compiled:
            return
        self.compiled += 1
        right = result.valid_accepted + result.invalid_rejected
        self.tests += right + len(result.valid_rejected) + len(result.invalid_accepted)
        self.tests_right += right
        self.invalid_accepted += len(result.invalid_accepted)
        self.valid_rejected += len(result.valid_rejected)
        self.mask_seconds += result.mask_seconds

    @property
    def coverage(self) -> float:
        return self.compiled / self.schemas if self.schemas else 0.0

    @property
    def compliance(self) -> float:
        return self.tests_right / self.tests if self.tests else 1.0
