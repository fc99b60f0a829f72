"""Fixtures for grammar tests: the default model's tokenizer and one backend of each kind.

Conformance results are collected per (backend, file) and printed as a table at the end of the
session; set GRAMMAR_REPORT=path to also write it to a file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sluicegate.grammars import get_backend
from sluicegate.grammars.conformance import FileSummary

REPO = Path(__file__).resolve().parents[2]
SAMPLE_SCHEMAS = REPO / "tests" / "data" / "schemas"
SHARED_SCHEMAS = REPO.parent / "shared" / "data" / "schemas"

SUMMARIES: dict[tuple[str, str], FileSummary] = {}


def load_default_tokenizer() -> Any:
    try:
        from sluicegate.engine.models.tokenizer import load_tokenizer

        return load_tokenizer(None)
    except ImportError:  # before engine.models.tokenizer existed: read the GGUF directly
        from transformers import AutoTokenizer

        from sluicegate.engine.models.default_model import default_model_path

        path = default_model_path()
        return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


@pytest.fixture(scope="session")
def tokenizer() -> Any:
    return load_default_tokenizer()


@pytest.fixture(scope="session")
def vocab_size(tokenizer: Any) -> int:
    from sluicegate.grammars.vocab import vocab_size_of

    return vocab_size_of(tokenizer)


@pytest.fixture(scope="session")
def llguidance_backend(tokenizer: Any) -> Any:
    return get_backend("llguidance", tokenizer)


@pytest.fixture(scope="session")
def outlines_backend(tokenizer: Any) -> Any:
    return get_backend("outlines", tokenizer)


@pytest.fixture(scope="session", params=["llguidance", "outlines"])
def backend(request: pytest.FixtureRequest) -> Iterator[Any]:
    yield request.getfixturevalue(f"{request.param}_backend")


def _table() -> str:
    rows = ["| backend | file | schemas | coverage | tests | compliance | invalid accepted | valid rejected |"]
    rows.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for (backend, name), s in sorted(SUMMARIES.items()):
        rows.append(
            f"| {backend} | {name} | {s.schemas} | {s.coverage:.1%} | {s.tests} | {s.compliance:.1%} "
            f"| {s.invalid_accepted} | {s.valid_rejected} |"
        )
    return "\n".join(rows)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not SUMMARIES:
        return
    table = _table()
    terminalreporter.write_sep("-", "structured-output conformance (declared coverage, compliance)")
    terminalreporter.write_line(table)
    report = os.environ.get("GRAMMAR_REPORT")
    if report:
        Path(report).write_text(table + "\n", encoding="utf-8")
