"""Every setting declared with option() is a flag of the commands that use it, and each flag's
value arrives in the config the engine or server is built from (none is dropped on the way)."""

from __future__ import annotations

import argparse
from typing import Any

import pytest
import torch

from sluicegate import __version__
from sluicegate.engine.config import CacheConfig, EngineConfig, kv_cache_bytes, resolve_chat_template
from sluicegate.gateway.app import engine_config
from sluicegate.gateway.cli import build_parser, engine_config_from_args, parse_args, settings_from_args
from sluicegate.gateway.flags import Flag, unflagged, walk
from sluicegate.gateway.settings import ServeSettings

# Internal settings with no flag; a new field lands here only on purpose.
UNFLAGGED = {"engine.cache.num_blocks", "engine.grammar.num_compile_workers", "engine.grammar.cache_max_entries",
             "retry_after_s"}
# Flags that are only valid together with another one.
COMPANIONS = {"--ssl-keyfile": ["--ssl-certfile", "c.pem"], "--ssl-certfile": ["--ssl-keyfile", "k.pem"]}


def _other_value(flag: Flag) -> tuple[list[str], Any]:
    """Command-line words that set `flag` to a value other than its default, and that value."""
    name = flag.option_strings[0]
    if flag.field_type is bool:
        return ([f"--no-{name[2:]}"] if flag.default else [name]), not flag.default
    if flag.spec.choices:
        value = next(c for c in flag.spec.choices if c != flag.default)
        return [name, value], value
    if flag.field_type is int:
        value = (flag.default or 0) + 3
    elif flag.field_type is float:
        value = (flag.default or 0.0) + 0.25
    elif flag.spec.parse is not None:
        return [name, "a,b"], flag.spec.parse("a,b")
    else:
        value = "some-value"
    return [name, str(value)], value


def _at(obj: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        obj = getattr(obj, name)
    return obj


ENGINE_FLAGS = list(walk(EngineConfig))
SERVE_FLAGS = list(walk(ServeSettings))


@pytest.mark.parametrize("flag", SERVE_FLAGS, ids=lambda f: f.option_strings[0])
def test_every_serve_flag_reaches_the_settings_and_the_engine_config(flag: Flag) -> None:
    words, value = _other_value(flag)
    settings = settings_from_args(parse_args(["serve", *words, *COMPANIONS.get(words[0], [])]))
    assert _at(settings, flag.path) == value
    if flag.path[0] == "engine":
        assert _at(engine_config(settings), flag.path[1:]) == value


@pytest.mark.parametrize("flag", ENGINE_FLAGS, ids=lambda f: f.option_strings[0])
def test_every_engine_flag_reaches_generates_engine_config(flag: Flag) -> None:
    words, value = _other_value(flag)
    config = engine_config_from_args(parse_args(["generate", "hi", *words]))
    assert _at(config, flag.path) == value


def test_engine_flags_are_serve_flags_too() -> None:
    assert [("engine", *f.path) for f in ENGINE_FLAGS] == [f.path for f in SERVE_FLAGS if f.path[0] == "engine"]


def test_only_the_listed_settings_have_no_flag() -> None:
    assert set(unflagged(ServeSettings)) == UNFLAGGED


def test_no_flags_give_the_dataclass_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLUICEGATE_API_KEY", raising=False)
    assert settings_from_args(parse_args(["serve"])) == ServeSettings()
    assert engine_config_from_args(parse_args(["generate", "hi"])) == EngineConfig()


def test_every_flag_has_help() -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command in subparsers.choices.values():
        for action in command._actions:
            assert action.help, (command.prog, action.option_strings or action.dest)


def test_model_is_positional_or_a_flag() -> None:
    for words in (["serve", "m.gguf"], ["serve", "--model", "m.gguf"], ["serve", "-m", "m.gguf"],
                  ["serve", "m.gguf", "--model", "m.gguf"]):
        assert settings_from_args(parse_args(words)).engine.model.model == "m.gguf"
    with pytest.raises(SystemExit):
        parse_args(["serve", "a.gguf", "--model", "b.gguf"])


def test_llama_server_aliases() -> None:
    config = engine_config_from_args(parse_args(["generate", "hi", "-m", "m.gguf", "-c", "2048"]))
    assert (config.model.model, config.model.max_model_len) == ("m.gguf", 2048)


def test_api_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICEGATE_API_KEY", "k1")
    assert settings_from_args(parse_args(["serve"])).api_key == "k1"
    assert settings_from_args(parse_args(["serve", "--api-key", "k2"])).api_key == "k2"


def test_cors_origins_are_a_comma_list() -> None:
    settings = settings_from_args(parse_args(["serve", "--cors-origins", "https://a.example, https://b.example,"]))
    assert settings.cors_origins == ("https://a.example", "https://b.example")


def test_dtype_accepts_the_engines_aliases() -> None:
    for alias in ("bf16", "fp16", "fp32", "bfloat16"):
        assert engine_config_from_args(parse_args(["generate", "hi", "--dtype", alias])).model.dtype == alias
    with pytest.raises(SystemExit):
        parse_args(["generate", "hi", "--dtype", "int3"])


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"sluicegate {__version__}"


def test_serve_threads_default_leaves_a_core_but_honours_the_flag() -> None:
    assert engine_config(settings_from_args(parse_args(["serve"]))).num_threads is not None
    assert engine_config(settings_from_args(parse_args(["serve", "--num-threads", "3"]))).num_threads == 3


def test_https_needs_both_key_and_certificate() -> None:
    with pytest.raises(SystemExit):
        parse_args(["serve", "--ssl-keyfile", "key.pem"])
    settings = settings_from_args(parse_args(["serve", "--ssl-keyfile", "k.pem", "--ssl-certfile", "c.pem"]))
    assert (settings.ssl_keyfile, settings.ssl_certfile) == ("k.pem", "c.pem")


def test_chat_template_from_a_file_or_inline(tmp_path: Any) -> None:
    template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    path = tmp_path / "t.jinja"
    path.write_text(template)
    assert resolve_chat_template(str(path)) == template
    assert resolve_chat_template(template) == template
    assert resolve_chat_template(None) is None
    with pytest.raises(ValueError, match="neither a file nor Jinja"):
        resolve_chat_template(str(tmp_path / "missing.jinja"))


def test_kv_cache_size_from_gb_on_cpu_and_the_fraction_is_checked() -> None:
    cpu = torch.device("cpu")
    assert kv_cache_bytes(CacheConfig(kv_cache_memory_gb=0.5), cpu) == 2**29
    # The GPU share applies to GPUs only; on CPU the GB figure stays the size.
    assert kv_cache_bytes(CacheConfig(kv_cache_memory_gb=0.5, gpu_memory_utilization=0.8), cpu) == 2**29
    with pytest.raises(ValueError, match="gpu_memory_utilization"):
        kv_cache_bytes(CacheConfig(gpu_memory_utilization=1.5), cpu)
