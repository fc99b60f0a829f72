"""Every compiled schema must accept its valid instances and reject its invalid ones.

The committed sample (tests/data/schemas) always runs, on both backends. The full shared files
(../shared/data/schemas, when present) run on llguidance; outlines runs on a bounded prefix of
the smaller files, because outlines-core builds its index eagerly (seconds for big schemas).
A schema that does not compile must fail with GrammarError (check_case catches only that), never
with another exception. A wrongly accepted invalid instance is a failure; a rejected valid
instance lowers compliance and is reported, but only fails the test for llguidance, where the
measured compliance is 100%.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import pytest

from sluicegate.grammars.conformance import RUNTIME_ERROR, FileSummary, check_case, read_cases
from tests.grammars.conftest import SAMPLE_SCHEMAS, SHARED_SCHEMAS, SUMMARIES

SAMPLE_FILES = sorted(SAMPLE_SCHEMAS.glob("*.jsonl"))
SHARED_FILES = sorted(SHARED_SCHEMAS.glob("*.jsonl")) if SHARED_SCHEMAS.is_dir() else []
# outlines on the shared data: how many schemas per file, and a wall-clock budget per file
OUTLINES_SHARED_LIMIT = 40
OUTLINES_FILE_BUDGET_S = 20.0


def _run_file(
    backend: Any, tokenizer: Any, vocab_size: int, path: Path, label: str, limit: int | None, budget_s: float
) -> FileSummary:
    summary = FileSummary(f"{label}:{path.stem}")
    unsafe: list[str] = []
    rejected: list[str] = []
    deadline = time.monotonic() + budget_s
    for case in itertools.islice(read_cases(path), limit):
        if time.monotonic() > deadline:
            break
        result = check_case(backend, tokenizer, case, vocab_size)
        summary.add(result)
        unsafe += [f"{result.id} {x}" for x in result.invalid_accepted]
        rejected += [f"{result.id} {x}" for x in result.valid_rejected]
    SUMMARIES[(backend.name, summary.name)] = summary
    assert not unsafe, f"{backend.name} accepted invalid instances:\n" + "\n".join(unsafe[:20])
    if backend.name == "llguidance":
        # a lexer resource limit hit mid-generation ends the request with an error (reported in
        # the summary as a rejected valid instance); any other rejection of a valid one fails
        rejected = [r for r in rejected if RUNTIME_ERROR not in r]
        assert not rejected, "llguidance rejected valid instances:\n" + "\n".join(rejected[:20])
    return summary


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=[p.stem for p in SAMPLE_FILES])
def test_sample_schemas(backend: Any, tokenizer: Any, vocab_size: int, path: Path) -> None:
    summary = _run_file(backend, tokenizer, vocab_size, path, "sample", None, 120.0)
    assert summary.schemas > 0


@pytest.mark.skipif(not SHARED_FILES, reason="../shared/data/schemas is not present")
@pytest.mark.parametrize("path", SHARED_FILES, ids=[p.stem for p in SHARED_FILES])
def test_shared_schemas_llguidance(llguidance_backend: Any, tokenizer: Any, vocab_size: int, path: Path) -> None:
    summary = _run_file(llguidance_backend, tokenizer, vocab_size, path, "full", None, 600.0)
    assert summary.schemas > 0


@pytest.mark.skipif(not SHARED_FILES, reason="../shared/data/schemas is not present")
@pytest.mark.parametrize("path", SHARED_FILES, ids=[p.stem for p in SHARED_FILES])
def test_shared_schemas_outlines_bounded(outlines_backend: Any, tokenizer: Any, vocab_size: int, path: Path) -> None:
    label = f"first{OUTLINES_SHARED_LIMIT}"
    summary = _run_file(
        outlines_backend, tokenizer, vocab_size, path, label, OUTLINES_SHARED_LIMIT, OUTLINES_FILE_BUDGET_S
    )
    assert summary.schemas > 0
