"""Tokenizer → the vocabularies the grammar backends need.

Grammar backends match bytes, not token strings, so every token is decoded to the raw bytes it
stands for: byte-level BPE (GPT-2, SmolLM2, Qwen2, Llama-3) maps each byte to a printable unicode
character, SentencePiece (Llama-2 style) writes spaces as '▁' and unknown bytes as '<0xNN>'.
Special tokens (<|im_end|>, <|im_start|>, …) are never text: they are left out, except that EOS is
handed to each backend in the way it wants it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from typing import Any, cast

_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
_BRACKETED = re.compile(r"^\[(/?[A-Za-z0-9_]+)\]$")  # Mistral's control tokens: [TOOL_CALLS], [/INST]


@functools.lru_cache(maxsize=1)
def _byte_level_decoder() -> dict[str, int]:
    """GPT-2's bytes_to_unicode table, inverted: printable char → the byte it encodes."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def _tokenizer_json(tokenizer: Any) -> dict[str, Any]:
    return json.loads(tokenizer.backend_tokenizer.to_str())


def is_byte_level(tokenizer: Any) -> bool:
    decoder = _tokenizer_json(tokenizer).get("decoder") or {}
    if decoder.get("type") == "ByteLevel":
        return True
    return any(d.get("type") == "ByteLevel" for d in decoder.get("decoders", []))


def special_token_ids(tokenizer: Any) -> set[int]:
    """Ids of every special (control) token: these never stand for text."""
    ids = {a["id"] for a in _tokenizer_json(tokenizer).get("added_tokens", []) if a.get("special")}
    ids.update(int(i) for i in getattr(tokenizer, "all_special_ids", []) if i is not None)
    return ids


def eos_token_ids(tokenizer: Any) -> list[int]:
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no EOS token; grammars need one to know when to stop")
    return [int(eos)] if isinstance(eos, int) else [int(e) for e in eos]


def _decode_token(token: str, byte_level: bool) -> bytes | None:
    if byte_level:
        table = _byte_level_decoder()
        try:
            return bytes(table[ch] for ch in token)
        except KeyError:  # an added non-special token written as plain text (e.g. "<tool_call>")
            return token.encode("utf-8")
    fallback = _BYTE_FALLBACK.match(token)
    if fallback:
        return bytes([int(fallback.group(1), 16)])
    return token.replace("▁", " ").encode("utf-8")


def token_bytes_table(tokenizer: Any) -> list[bytes | None]:
    """Index = token id; value = the raw bytes the token writes, None for special tokens."""
    byte_level = is_byte_level(tokenizer)
    specials = special_token_ids(tokenizer)
    vocab: dict[str, int] = tokenizer.get_vocab()
    table: list[bytes | None] = [None] * (max(vocab.values()) + 1)
    for token, token_id in vocab.items():
        if token_id not in specials:
            table[token_id] = _decode_token(token, byte_level)
    return table


def outlines_vocabulary(tokenizer: Any) -> Any:
    """outlines_core.Vocabulary built here (its from_pretrained reaches a model hub)."""
    import outlines_core

    eos = eos_token_ids(tokenizer)[0]
    by_bytes: dict[bytes, list[int]] = {}
    for token_id, raw in enumerate(token_bytes_table(tokenizer)):
        if raw:  # outlines cannot hold an empty token; None = special
            by_bytes.setdefault(raw, []).append(token_id)
    return outlines_core.Vocabulary(eos, by_bytes)


def llguidance_tokenizer(tokenizer: Any, vocab_size: int | None = None) -> Any:
    """llguidance's LLTokenizer, built so that special tokens never stand for text.

    llguidance.hf.from_tokenizer is not used: its Rust side tokenizes forced grammar text (a
    property name, a const) with the HF tokenizer, which turns the text "<|im_end|>" into the
    special token; the matcher then offers only that token and refuses it as EOS. Here the trie
    marks every special token as special (never text) and the tokenize callback reads
    special-token text as ordinary text, so such names are spelled with ordinary tokens.
    """
    import llguidance

    size = max(vocab_size or 0, vocab_size_of(tokenizer))
    # LLGuidanceVocab has TokenizerWrapper's shape (llguidance checks attributes, not the class)
    vocab = cast(llguidance.TokenizerWrapper, LLGuidanceVocab(tokenizer, size))
    return llguidance.LLTokenizer(vocab, n_vocab=size, eos_token=eos_token_ids(tokenizer))


class LLGuidanceVocab:
    """The TokenizerWrapper protocol llguidance.LLTokenizer reads (tokens, ids, a callable).

    tokens[i] is token i's raw bytes; special tokens hold their name and are listed in
    special_token_ids, which llguidance marks with its 0xFF prefix so no text can match them.
    Ids with no token (padding up to the model's vocab size) are special placeholders.
    """

    is_tokenizer_wrapper = True  # what llguidance checks for

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        table = token_bytes_table(tokenizer)
        names = {i: t for t, i in tokenizer.get_vocab().items()}
        taken = set(names.values())
        specials = special_token_ids(tokenizer)
        self.tokens: list[bytes] = []
        self.special_token_ids: list[int] = []
        for token_id in range(vocab_size):
            raw = table[token_id] if token_id < len(table) else None
            if raw is None or token_id in specials:
                self.special_token_ids.append(token_id)
                name = names.get(token_id, f"<[{token_id}]>")
                raw = lark_special_name(name, taken).encode("utf-8")
            self.tokens.append(raw)
        self.eos_token_id = eos_token_ids(tokenizer)[0]
        self.bos_token_id = tokenizer.bos_token_id
        self._text_tokenizer = text_only_tokenizer(tokenizer)

    def __call__(self, text: str | bytes) -> list[int]:
        """Token ids for plain text (llguidance hands over valid UTF-8 only)."""
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        ids: list[int] = self._text_tokenizer.encode(text, add_special_tokens=False).ids
        return ids


def lark_special_name(name: str, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """The name a lark grammar gives a special token. llguidance only knows `<...>` names, so
    Mistral's `[TOOL_CALLS]` is called `<TOOL_CALLS>` there (mistral_common's llguidance wrapper
    does the same), unless the tokenizer already has a token spelled that way."""
    bracketed = _BRACKETED.match(name)
    if bracketed is None:
        return name
    renamed = f"<{bracketed.group(1)}>"
    return name if renamed in taken else renamed


def text_only_tokenizer(tokenizer: Any) -> Any:
    """A copy of the Rust tokenizer for text in the middle of an output: special-token text
    ("<|im_end|>") is read as ordinary text and no leading space is added (the same fix-ups
    llguidance applies to its own copy: no Prepend normalizer, no Metaspace/ByteLevel prefix)."""
    import tokenizers

    data = _tokenizer_json(tokenizer)
    data["truncation"] = data["padding"] = data["post_processor"] = None
    data["normalizer"] = _without_prepend(data.get("normalizer"))
    data["pre_tokenizer"] = _without_prefix_space(data.get("pre_tokenizer"))
    text_tokenizer = tokenizers.Tokenizer.from_str(json.dumps(data))
    text_tokenizer.encode_special_tokens = True
    return text_tokenizer


def _without_prepend(normalizer: dict[str, Any] | None) -> dict[str, Any] | None:
    if not normalizer or normalizer.get("type") == "Prepend":
        return None
    if normalizer.get("type") == "Sequence":
        kept = [n for n in map(_without_prepend, normalizer.get("normalizers", [])) if n]
        return {**normalizer, "normalizers": kept} if kept else None
    return normalizer


def _without_prefix_space(pre: dict[str, Any] | None) -> dict[str, Any] | None:
    if not pre:
        return pre
    if pre.get("type") == "Sequence":
        return {**pre, "pretokenizers": [_without_prefix_space(p) for p in pre.get("pretokenizers", [])]}
    if pre.get("type") == "Metaspace":
        fixed = {**pre, "prepend_scheme": "never"}
        if "add_prefix_space" in pre:  # the field older tokenizers versions wrote instead
            fixed["add_prefix_space"] = False
        return fixed
    if pre.get("type") == "ByteLevel":
        return {**pre, "add_prefix_space": False}
    return pre


def vocab_size_of(tokenizer: Any) -> int:
    """Ids the tokenizer can produce (added tokens included); the bitmask covers at least these."""
    return max(len(tokenizer), max(tokenizer.get_vocab().values()) + 1)


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A stable identity for cache keys: two loads of the same tokenizer share compiled grammars."""
    text = tokenizer.backend_tokenizer.to_str()
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
