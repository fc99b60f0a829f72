"""Without its extra, an optional part fails with the pip command to run, and the core (HTTP with
llguidance) still works. Checked in a subprocess where the optional packages cannot be imported."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Hides the optional packages from the import system, as if their extras were not installed.
HIDE = textwrap.dedent("""
    import importlib.abc, sys
    HIDDEN = ("langchain_core", "llama_index", "grpc", "grpc_health", "grpc_reflection", "mcp", "outlines_core", "ray")
    class Hide(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in HIDDEN:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None
    sys.meta_path.insert(0, Hide())
""")


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", HIDE + textwrap.dedent(code)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_integrations_name_their_extra() -> None:
    result = _run("""
        for module, extra in (("langchain", "langchain"), ("llama_index", "llama-index")):
            try:
                __import__(f"sluicegate.integrations.{module}")
            except ImportError as exc:
                assert f"pip install 'sluicegate[{extra}]'" in str(exc), exc
            else:
                raise AssertionError(module)
        from sluicegate.grammars import get_backend
        try:
            get_backend("outlines", None)
        except ImportError as exc:
            assert "pip install 'sluicegate[outlines]'" in str(exc), exc
        else:
            raise AssertionError("outlines")
    """)
    assert result.returncode == 0, result.stderr


def test_flags_that_need_an_extra_stop_with_the_pip_command() -> None:
    for flags, extra in ((["--grpc-port", "50051"], "grpc"), (["--mcp-config", "x.json"], "mcp"),
                         (["--grammar-backend", "outlines"], "outlines"), (["--replicas", "2"], "ray")):
        result = _run(f"from sluicegate.gateway.cli import parse_args; parse_args(['serve', *{flags!r}])")
        assert result.returncode == 2, result.stderr
        assert f"pip install 'sluicegate[{extra}]'" in result.stderr


def test_core_http_app_builds_without_any_extra() -> None:
    result = _run("""
        from sluicegate.gateway.app import create_app
        from sluicegate.gateway.cli import parse_args, settings_from_args
        app = create_app(settings_from_args(parse_args(["serve"])))
        paths = set(app.openapi()["paths"])
        assert {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/ready"} <= paths, paths
        import sluicegate.engine.llm_engine, sluicegate.grammars.llguidance_backend
    """)
    assert result.returncode == 0, result.stderr
