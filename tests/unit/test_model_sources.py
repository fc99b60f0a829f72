"""Models a user brings: Hugging Face Hub ids (from a local HF cache laid out here, offline, or
downloaded from a stand-in Hub on 127.0.0.1), Ollama-style GGUF blobs without a suffix, and
Llama 3.x GGUF files with their rope scaling."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from gguf import GGMLQuantizationType

from sluicegate.engine.models.default_model import resolve_model_path
from sluicegate.engine.models.gguf_loader import gguf_hf_dir
from sluicegate.engine.models.hub import looks_like_hub_id
from sluicegate.engine.models.loader import load_model
from sluicegate.engine.models.rope import inverse_frequencies
from tests.fake_hf_hub import fake_hub
from tests.model_factory import make_tiny_gguf, make_tiny_hf_model
from tests.unit.test_architectures import LLAMA3_ROPE, PROMPTS, engine_greedy, hf_greedy

CPU = torch.device("cpu")
REPO = Path(__file__).resolve().parents[2]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module", autouse=True)
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh conversion cache, so the tests never read (or write) the user's ~/.cache."""
    root = tmp_path_factory.mktemp("sluicegate-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLUICEGATE_CACHE_DIR", str(root))
        yield root


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_hf_model(tmp_path_factory.mktemp("tiny") / "tiny-llama", "llama", seed=0)


def test_hub_ids_are_told_from_paths() -> None:
    assert looks_like_hub_id("Qwen/Qwen2.5-0.5B-Instruct")
    assert looks_like_hub_id("HuggingFaceTB/SmolLM2-135M-Instruct")
    for not_an_id in ("./models/x", "/abs/path", "~/x/y", "x/y.gguf", "a/b/c", "plain", "../up/x"):
        assert not looks_like_hub_id(not_an_id), not_an_id


def _lay_out_hf_cache(hub_cache: Path, repo_id: str, folder: Path) -> None:
    """huggingface_hub's cache layout: models--owner--name/{refs/main, snapshots/<commit>/...}."""
    repo = hub_cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    shutil.copytree(folder, repo / "snapshots" / COMMIT)


_LOAD_SCRIPT = """
import json, sys, torch
from sluicegate.engine.models.hub import HubModelError
from sluicegate.engine.models.loader import load_model
loaded = load_model(sys.argv[1], torch.float32, torch.device("cpu"), progress=None)
try:
    load_model(sys.argv[2], torch.float32, torch.device("cpu"), progress=None)
    missing = None
except HubModelError as exc:
    missing = str(exc)
print(json.dumps({"name": loaded.name, "path": str(loaded.path), "layers": loaded.arch.num_layers,
                  "missing": missing}))
"""


def _load_in_fresh_process(tmp_path: Path, hf_env: dict[str, str], model: str, missing: str) -> dict:
    """Run _LOAD_SCRIPT as a user's process would start: huggingface_hub reads its environment
    (HF_HOME, HF_HUB_OFFLINE, HF_ENDPOINT) once, at import."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(hf_env, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", _LOAD_SCRIPT, model, missing],
                          capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result: dict = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_hub_id_resolves_from_the_local_cache_offline(tmp_path: Path, tiny_llama: Path) -> None:
    """HF_HOME points at a cache laid out here and HF_HUB_OFFLINE=1: nothing can reach a network."""
    hf_home = tmp_path / "hf-home"
    _lay_out_hf_cache(hf_home / "hub", "acme/tiny-llama", tiny_llama)
    result = _load_in_fresh_process(tmp_path, {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"},
                                    "acme/tiny-llama", "acme/not-cached")
    assert result["name"] == "acme/tiny-llama"  # served under the id the user typed
    assert Path(result["path"]) == (hf_home / "hub" / "models--acme--tiny-llama" / "snapshots" / COMMIT)
    assert result["layers"] == 2
    assert "acme/not-cached" in result["missing"] and "HF_HUB_OFFLINE" in result["missing"]


def test_hub_id_is_downloaded_when_missing(tmp_path: Path, tiny_llama: Path) -> None:
    """Online (a stand-in Hub on 127.0.0.1 as HF_ENDPOINT): the model is downloaded into the HF
    cache, only the files the engine reads; the next start finds it offline."""
    repo = tmp_path / "repo"
    shutil.copytree(tiny_llama, repo)
    (repo / "pytorch_model.bin").write_bytes(b"\0" * 1024)  # a duplicate format, never fetched
    hf_home = tmp_path / "hf-home"
    with fake_hub("acme/tiny-llama", repo) as (endpoint, requested):
        online = _load_in_fresh_process(tmp_path, {"HF_HOME": str(hf_home), "HF_ENDPOINT": endpoint},
                                        "acme/tiny-llama", "acme/unknown")
    assert online["name"] == "acme/tiny-llama" and online["layers"] == 2
    assert Path(online["path"]).parent == hf_home / "hub" / "models--acme--tiny-llama" / "snapshots"
    fetched = {r.rsplit("/", 1)[-1] for r in requested if r.startswith("GET /acme/tiny-llama/resolve/")}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= fetched
    assert "pytorch_model.bin" not in fetched
    assert "acme/unknown" in online["missing"] and "could not be downloaded" in online["missing"]
    offline = _load_in_fresh_process(tmp_path, {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"},
                                     "acme/tiny-llama", "acme/unknown")
    assert offline["path"] == online["path"]


def test_missing_local_paths_are_not_sent_to_the_hub(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="model not found"):
        resolve_model_path(str(tmp_path / "owner" / "name"))
    with pytest.raises(FileNotFoundError, match="model not found"):
        resolve_model_path("owner/model.gguf")


def test_ollama_blob_without_suffix_loads_by_magic_bytes(tmp_path: Path, tiny_llama: Path) -> None:
    gguf_file = make_tiny_gguf(tmp_path / "tiny.gguf", tiny_llama, GGMLQuantizationType.F32)
    blobs = tmp_path / "ollama" / "models" / "blobs"
    blobs.mkdir(parents=True)
    blob = blobs / ("sha256-" + "ab" * 32)
    shutil.copy(gguf_file, blob)
    assert resolve_model_path(str(blob)) == blob
    loaded = load_model(str(blob), torch.float32, CPU, progress=None)
    reference = load_model(str(gguf_file), torch.float32, CPU, progress=None)
    assert loaded.path == blob and loaded.name == blob.name
    assert all(torch.equal(loaded.weights[k], v) for k, v in reference.weights.items())
    assert loaded.tokenizer.eos_token_id == 2 and loaded.chat_template
    (tmp_path / "notes").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a GGUF file"):
        resolve_model_path(str(tmp_path / "notes"))


def test_llama3_gguf_keeps_its_rope_scaling(tmp_path: Path) -> None:
    """A Llama 3.x GGUF as llama.cpp writes it (rope scaling as a rope_freqs tensor): the same
    rotary frequencies as the HF config's llama3 scaling, the same logits in transformers, the
    same greedy tokens through the engine."""
    hf_dir = make_tiny_hf_model(tmp_path / "tiny-llama3", "llama", seed=4, rope_parameters=LLAMA3_ROPE)
    gguf_file = make_tiny_gguf(tmp_path / "tiny-llama3.gguf", hf_dir, GGMLQuantizationType.F32)
    loaded = load_model(str(gguf_file), torch.float32, CPU, progress=None)
    ours, attn_factor = inverse_frequencies(16, 10000.0, loaded.arch.rope_scaling_dict())
    theirs, _ = inverse_frequencies(16, 10000.0, LLAMA3_ROPE)
    assert attn_factor == 1.0
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=0)
    assert not torch.allclose(theirs, inverse_frequencies(16, 10000.0, None)[0])  # scaling matters here
    # transformers reads the converted folder's rope_scaling the same way
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([PROMPTS[0]])
    with torch.no_grad():
        expected = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32)(ids).logits
        converted = AutoModelForCausalLM.from_pretrained(str(gguf_hf_dir(gguf_file)), dtype=torch.float32)
        torch.testing.assert_close(converted(ids).logits, expected, rtol=1e-5, atol=1e-5)
    _, got = engine_greedy(str(gguf_file), PROMPTS)
    assert got == hf_greedy(hf_dir, PROMPTS)
