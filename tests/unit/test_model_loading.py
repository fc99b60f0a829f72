"""Model loading: default model path, tokenizer, ModelArch, safetensors folders, GGUF files."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from gguf import GGMLQuantizationType
from safetensors.torch import load_file

from sluicegate.engine.models.arch import ModelArch
from sluicegate.engine.models.convert_cache import atomic_dir, cache_dir_for
from sluicegate.engine.models.default_model import (
    DEFAULT_MODEL_NAME,
    default_model_path,
    resolve_model_path,
)
from sluicegate.engine.models.gguf_loader import (
    gguf_hf_config,
    permute_rotary,
    read_gguf_weights,
    unpermute_rotary,
)
from sluicegate.engine.models.loader import LoadedModel, load_model
from sluicegate.engine.models.safetensors_loader import expected_weight_shapes
from sluicegate.engine.models.tokenizer import load_tokenizer
from tests.model_factory import make_tiny_gguf, make_tiny_hf_model, tiny_config

CPU = torch.device("cpu")


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


@pytest.fixture(scope="module")
def tiny_qwen2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_hf_model(tmp_path_factory.mktemp("tiny") / "tiny-qwen2", "qwen2", seed=1)


def test_default_model_path_resolves() -> None:
    path = default_model_path()
    assert path.is_file() and path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert resolve_model_path(None) == path


def test_resolve_model_path_rejects_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        resolve_model_path(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="config.json"):
        resolve_model_path(str(tmp_path))
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="not a GGUF file"):
        resolve_model_path(str(tmp_path / "weights.bin"))


def test_default_tokenizer_round_trips_and_has_chat_template() -> None:
    tok = load_tokenizer(None)
    text = "Héllo wörld 🦙\n\tcode: {\"a\": [1, 2]}  <|im_end|>"
    ids = tok(text).input_ids
    assert ids[0] != tok.bos_token_id  # the GGUF says add_bos_token False
    assert tok.decode(ids) == text
    assert tok.eos_token == "<|im_end|>" and tok.eos_token_id == 2
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                     add_generation_prompt=True)
    assert isinstance(prompt, str)
    assert prompt.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


def test_tokenizer_second_load_comes_from_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    load_tokenizer(None)  # converted (or already cached) by now
    assert (cache_dir_for(default_model_path()) / "tokenizer" / "tokenizer.json").is_file() or (
        cache_dir_for(default_model_path()) / "hf" / "tokenizer.json").is_file()

    def no_conversion(*args: object) -> None:
        raise AssertionError("the tokenizer was converted again instead of read from the cache")

    # a check of what happens, not of how long it takes (a timing bound failed on a loaded machine)
    monkeypatch.setattr("sluicegate.engine.models.tokenizer.convert_gguf_tokenizer", no_conversion)
    tok = load_tokenizer(None)
    assert tok.chat_template


def test_model_arch_from_llama_and_qwen2_configs() -> None:
    llama = ModelArch.from_hf_config(tiny_config("llama").to_dict(), extra_eos_ids=(2, 7))
    assert (llama.model_type, llama.num_heads, llama.num_kv_heads, llama.head_dim) == ("llama", 4, 2, 16)
    assert llama.tie_word_embeddings and not llama.attention_bias
    assert llama.eos_token_ids == (2, 7) and llama.rope_scaling is None
    qwen = ModelArch.from_hf_config(tiny_config("qwen2").to_dict())
    assert qwen.attention_bias and not qwen.tie_word_embeddings and qwen.sliding_window is None


def test_model_arch_rope_scaling_is_hashable_and_unknown_types_fail() -> None:
    config = tiny_config("llama").to_dict()
    config["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                              "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    arch = ModelArch.from_hf_config(config)
    hash(arch)
    assert arch.rope_scaling_dict() == {k: v for k, v in config["rope_scaling"].items()}
    with pytest.raises(ValueError, match="unsupported model_type"):
        ModelArch.from_hf_config({**config, "model_type": "gpt2"})


def _assert_layout(loaded: LoadedModel, dtype: torch.dtype) -> None:
    shapes = expected_weight_shapes(loaded.arch)
    assert set(loaded.weights) == set(shapes)
    for name, tensor in loaded.weights.items():
        assert tuple(tensor.shape) == shapes[name], name
        assert tensor.dtype == dtype and tensor.device.type == "cpu"


def test_load_tiny_llama_folder(tiny_llama: Path) -> None:
    loaded = load_model(str(tiny_llama), torch.bfloat16, CPU, progress=None)
    _assert_layout(loaded, torch.bfloat16)
    assert "lm_head.weight" not in loaded.weights  # tied
    assert loaded.name == "tiny-llama" and loaded.max_model_len == 512
    assert loaded.chat_template and loaded.tokenizer.eos_token_id == 2
    saved = load_file(str(tiny_llama / "model.safetensors"))
    name = "model.layers.1.self_attn.k_proj.weight"
    assert torch.equal(loaded.weights[name], saved[name].to(torch.bfloat16))


def test_load_tiny_qwen2_folder_has_bias_and_lm_head(tiny_qwen2: Path) -> None:
    loaded = load_model(str(tiny_qwen2), torch.float32, CPU, progress=None)
    _assert_layout(loaded, torch.float32)
    assert "lm_head.weight" in loaded.weights
    assert "model.layers.0.self_attn.q_proj.bias" in loaded.weights


def test_load_sharded_folder(tmp_path: Path, tiny_llama: Path) -> None:
    from transformers import AutoModelForCausalLM

    sharded = tmp_path / "sharded"
    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama), dtype=torch.float32)
    model.save_pretrained(str(sharded), safe_serialization=True, max_shard_size="2MB")
    load_tokenizer(str(tiny_llama)).save_pretrained(str(sharded))
    assert (sharded / "model.safetensors.index.json").is_file()
    loaded = load_model(str(sharded), torch.float32, CPU, progress=None)
    reference = load_model(str(tiny_llama), torch.float32, CPU, progress=None)
    assert all(torch.equal(loaded.weights[k], v) for k, v in reference.weights.items())


def test_rotary_unpermute_inverts_llama_cpp_permute() -> None:
    w = torch.randn(4 * 16, 64)  # [num_heads * head_dim, hidden]
    permuted = permute_rotary(w, 4)
    assert not torch.equal(permuted, w)
    assert torch.equal(unpermute_rotary(permuted, 4), w)
    # llama.cpp's permute puts the rotate-half pairs (i, i + head_dim/2) next to each other
    assert torch.equal(permuted[1], w[8]) and torch.equal(permuted[2], w[1])


def _logits_via_transformers(folder: Path, weights: dict[str, torch.Tensor] | None) -> torch.Tensor:
    """Logits of transformers' model from `folder`, optionally with `weights` loaded into it."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    if weights is not None:
        result = model.load_state_dict(weights, strict=False)
        assert not result.unexpected_keys
        assert set(result.missing_keys) <= {"lm_head.weight"}  # tied: lm_head is the embedding
    ids = torch.tensor([[1, 19556, 905, 28, 339, 1046, 2, 3051, 17, 99, 42]])
    with torch.no_grad():
        return model(ids).logits[0]


def test_gguf_f32_is_exact_and_unpermuted(tmp_path: Path, tiny_llama: Path) -> None:
    gguf_file = make_tiny_gguf(tmp_path / "tiny-llama-f32.gguf", tiny_llama, GGMLQuantizationType.F32)
    loaded = load_model(str(gguf_file), torch.float32, CPU, progress=None)
    assert loaded.name == "tiny-llama-f32" and loaded.path == gguf_file.resolve()
    _assert_layout(loaded, torch.float32)
    saved = load_file(str(tiny_llama / "model.safetensors"))
    for name, tensor in loaded.weights.items():
        assert torch.equal(tensor, saved[name]), name
    # Names + q/k order proven end to end: transformers' own model, fed our weights.
    expected = _logits_via_transformers(tiny_llama, None)
    ours = _logits_via_transformers(tiny_llama, loaded.weights)
    torch.testing.assert_close(ours, expected, rtol=0, atol=0)
    assert loaded.tokenizer.eos_token_id == 2 and loaded.chat_template


def test_gguf_q8_0_qwen2_within_quantization_error(tmp_path: Path, tiny_qwen2: Path) -> None:
    gguf_file = make_tiny_gguf(tmp_path / "tiny-qwen2-q8.gguf", tiny_qwen2, GGMLQuantizationType.Q8_0)
    lines: list[str] = []
    loaded = load_model(str(gguf_file), torch.float32, CPU, progress=lines.append)
    assert any("dequantizing layer 2/2" in line for line in lines)
    _assert_layout(loaded, torch.float32)
    saved = load_file(str(tiny_qwen2 / "model.safetensors"))
    for name, tensor in loaded.weights.items():
        # Q8_0: 32-value blocks, fp16 scale = absmax / 127: half a step, plus the scale's
        # fp16 rounding (2^-11 relative) times |q| <= 127, i.e. < 0.6 of a step
        bound = saved[name].abs().max() / 127 * 0.6
        assert (tensor - saved[name]).abs().max() <= bound, name
    expected = _logits_via_transformers(tiny_qwen2, None)
    ours = _logits_via_transformers(tiny_qwen2, loaded.weights)
    assert (ours - expected).abs().max() < 0.05 * expected.abs().max()
    # Second load: from the cache, without progress lines for conversion.
    lines.clear()
    load_model(str(gguf_file), torch.float32, CPU, progress=lines.append)
    assert not any("dequantizing" in line for line in lines)


@pytest.mark.parametrize("qtype, rel_tol", [
    (GGMLQuantizationType.F16, 1e-3), (GGMLQuantizationType.BF16, 8e-3),
    (GGMLQuantizationType.Q4_0, 0.2), (GGMLQuantizationType.Q4_1, 0.2),
])
def test_gguf_block_formats_dequantize(tmp_path: Path, qtype: GGMLQuantizationType, rel_tol: float) -> None:
    """Each format through our reader (no tokenizer conversion: that is tested above).

    A 256-token vocabulary keeps numpy quantization of the embedding fast.
    """
    from gguf import GGUFReader

    tiny_llama = make_tiny_hf_model(tmp_path / "small-vocab", "llama", seed=2, vocab_size=256)
    gguf_file = make_tiny_gguf(tmp_path / "t.gguf", tiny_llama, qtype, with_tokenizer=False)
    reader = GGUFReader(str(gguf_file))
    weights = read_gguf_weights(reader, gguf_hf_config(reader))
    saved = load_file(str(tiny_llama / "model.safetensors"))
    assert set(weights) == set(saved) - {"lm_head.weight"}
    for name, tensor in weights.items():
        assert tensor.dtype == torch.float32
        assert (tensor - saved[name]).abs().max() <= rel_tol * saved[name].abs().max(), name


def test_atomic_dir_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "entry"
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(target) as tmp:
        (tmp / "config.json").write_text("{}")
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]


@pytest.mark.slow
def test_default_model_matches_transformers_gguf_loader_and_reloads_fast() -> None:
    from transformers import AutoModelForCausalLM

    path = default_model_path()
    start = time.perf_counter()
    first = load_model(None, torch.float32, CPU, progress=None)
    first_s = time.perf_counter() - start
    assert first.name == DEFAULT_MODEL_NAME and first.arch.num_layers == 30
    assert first.arch.eos_token_ids == (2,) and first.max_model_len == 8192
    reference = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                     dtype=torch.float32)
    ref_state = reference.state_dict()
    for name, tensor in first.weights.items():
        assert torch.equal(tensor, ref_state[name]), name
    start = time.perf_counter()
    second = load_model(None, torch.float32, CPU, progress=None)
    second_s = time.perf_counter() - start
    print(f"default model load: first {first_s:.1f} s, second {second_s:.2f} s")
    assert second_s < 3.0
    assert torch.equal(second.weights["model.embed_tokens.weight"], first.weights["model.embed_tokens.weight"])
