"""Incremental detokenizer: multi-byte text across tokens, stop strings never leak."""

from __future__ import annotations

import pytest

from sluicegate.engine.detokenizer import IncrementalDetokenizer


@pytest.fixture(scope="module")
def tokenizer():  # noqa: ANN201
    from sluicegate.engine.models.tokenizer import load_tokenizer

    return load_tokenizer(None)


def _stream(tok, text: str, **kw: object) -> tuple[str, list[str], str | None]:
    detok = IncrementalDetokenizer(tok, **kw)
    deltas = []
    hit = None
    for token_id in tok(text).input_ids:
        hit = detok.add(token_id)
        deltas.append(detok.take_delta(final=False))
        if hit:
            break
    deltas.append(detok.take_delta(final=True))
    return "".join(deltas), deltas, hit


@pytest.mark.parametrize("text", ["héllo wörld — ünïcödé ✓", "日本語のテキスト、絵文字 🎉🚀 too", "plain ascii text"])
def test_multibyte_roundtrip(tokenizer, text: str) -> None:
    joined, deltas, _ = _stream(tokenizer, text)
    assert joined == text
    assert all("\ufffd" not in d for d in deltas)


def test_stop_string_never_leaks(tokenizer) -> None:
    joined, deltas, hit = _stream(tokenizer, "The answer is 42. END of story", stop=["END"])
    assert hit == "END"
    assert joined == "The answer is 42. "
    assert all("E" not in d for d in deltas)


def test_stop_string_included_when_asked(tokenizer) -> None:
    joined, _, hit = _stream(tokenizer, "alpha beta gamma delta", stop=["gamma"], include_stop=True)
    assert hit == "gamma" and joined == "alpha beta gamma"
