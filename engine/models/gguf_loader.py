"""GGUF file → HF model folder (config.json, model.safetensors, tokenizer files) in the cache.

Weights are dequantized to float32 with `gguf.quants.dequantize` (exact: every GGML block format
decodes to values float32 holds), renamed from llama.cpp names to HF names, and llama.cpp's
rotary permutation of q/k rows is undone for the llama architecture. The loader then reads the
cached folder like any HF folder, so the second start skips all of this.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gguf import GGUFReader
from gguf.quants import dequantize
from safetensors.torch import save_file

from sluicegate.engine.models.convert_cache import atomic_dir, cache_dir_for
from sluicegate.engine.models.tokenizer import HF_SUBDIR, gguf_tokenizer_dir

# GGUF architecture → (HF model_type, HF class name, q/k rows permuted by llama.cpp)
_ARCHS: dict[str, tuple[str, str, bool]] = {
    "llama": ("llama", "LlamaForCausalLM", True),
    "qwen2": ("qwen2", "Qwen2ForCausalLM", False),
}
_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
ROPE_FREQS = "rope_freqs.weight"
_LAYER_RE = re.compile(r"blk\.(\d+)\.(\w+)\.(weight|bias)$")


def gguf_hf_dir(gguf_path: Path, progress: Callable[[str], None] | None = None) -> Path:
    """The cached HF folder of a GGUF file, converting it on first use."""
    target = cache_dir_for(gguf_path) / HF_SUBDIR
    if (target / "model.safetensors").is_file():
        return target
    tokenizer_dir = gguf_tokenizer_dir(gguf_path)
    with atomic_dir(target) as tmp:
        convert_gguf_to_hf(gguf_path, tmp, progress)
        for file in tokenizer_dir.iterdir():
            shutil.copy2(file, tmp / file.name)
    if progress is not None:
        progress(f"cached converted model in {target}")
    return target


def convert_gguf_to_hf(gguf_path: Path, out_dir: Path, progress: Callable[[str], None] | None = None) -> None:
    """Write config.json and model.safetensors (float32) for `gguf_path` into `out_dir`."""
    if progress is not None:
        progress(f"converting GGUF {gguf_path.name} (first start only)")
    reader = GGUFReader(str(gguf_path))
    config = gguf_hf_config(reader)
    weights = read_gguf_weights(reader, config, progress)
    if progress is not None:
        progress("writing converted weights")
    save_file(weights, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))


def gguf_hf_config(reader: GGUFReader) -> dict[str, Any]:
    """An HF config.json dict from the GGUF metadata."""
    meta = _metadata(reader)
    arch = str(meta["general.architecture"])
    if arch not in _ARCHS:
        raise ValueError(f"GGUF architecture {arch!r} is not supported; supported: {', '.join(_ARCHS)}")
    model_type, hf_class, _ = _ARCHS[arch]
    embd = next(t for t in reader.tensors if t.name == "token_embd.weight")
    hidden = int(meta[f"{arch}.embedding_length"])
    num_heads = int(meta[f"{arch}.attention.head_count"])
    config: dict[str, Any] = {
        "architectures": [hf_class],
        "model_type": model_type,
        "vocab_size": int(embd.shape[1]),  # ggml shapes are reversed: [hidden, vocab]
        "hidden_size": hidden,
        "intermediate_size": int(meta[f"{arch}.feed_forward_length"]),
        "num_hidden_layers": int(meta[f"{arch}.block_count"]),
        "num_attention_heads": num_heads,
        "num_key_value_heads": int(meta.get(f"{arch}.attention.head_count_kv", num_heads)),
        "head_dim": int(meta.get(f"{arch}.attention.key_length", hidden // num_heads)),
        "rms_norm_eps": float(meta.get(f"{arch}.attention.layer_norm_rms_epsilon", 1e-6)),
        "rope_theta": float(meta.get(f"{arch}.rope.freq_base", 10000.0)),
        "max_position_embeddings": int(meta.get(f"{arch}.context_length", 2048)),
        "tie_word_embeddings": not any(t.name == "output.weight" for t in reader.tensors),
        "hidden_act": "silu",
        "torch_dtype": "float32",
        "bos_token_id": meta.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": meta.get("tokenizer.ggml.eos_token_id"),
    }
    if model_type == "qwen2":
        config["attention_bias"] = True
    scaling = _rope_freqs_scaling(reader, config) or _rope_scaling(meta, arch)
    if scaling is not None:
        config["rope_scaling"] = scaling
    return config


def read_gguf_weights(
    reader: GGUFReader, config: dict[str, Any], progress: Callable[[str], None] | None = None
) -> dict[str, torch.Tensor]:
    """Dequantized float32 weights under HF names, q/k un-permuted where llama.cpp permuted them."""
    permuted = any(mt == config["model_type"] and perm for mt, _, perm in _ARCHS.values())
    num_layers = int(config["num_hidden_layers"])
    weights: dict[str, torch.Tensor] = {}
    seen_layers: set[int] = set()  # GGUF order is blk.0, blk.1, blk.10, ...: count, don't index
    for tensor in reader.tensors:
        if tensor.name == ROPE_FREQS:
            continue  # not a weight: config.json's rope_scaling carries it (see _rope_freqs_scaling)
        name = hf_name(tensor.name)
        match = _LAYER_RE.match(tensor.name)
        if match and int(match.group(1)) not in seen_layers:
            seen_layers.add(int(match.group(1)))
            if progress is not None:
                progress(f"dequantizing layer {len(seen_layers)}/{num_layers}")
        # data: [rows, bytes] for block formats → [rows, cols] float32; ggml shape is reversed
        values = dequantize(tensor.data, tensor.tensor_type).astype(np.float32, copy=False)
        shape = tuple(int(d) for d in reversed(tensor.shape.tolist()))
        values = values.reshape(shape)
        if not values.flags.writeable:  # float32 tensors come straight from the read-only mmap
            values = values.copy()
        weight = torch.from_numpy(np.ascontiguousarray(values))
        if permuted and name.endswith(("self_attn.q_proj.weight", "self_attn.q_proj.bias")):
            weight = unpermute_rotary(weight, int(config["num_attention_heads"]))
        elif permuted and name.endswith(("self_attn.k_proj.weight", "self_attn.k_proj.bias")):
            weight = unpermute_rotary(weight, int(config["num_key_value_heads"]))
        weights[name] = weight
    return weights


def hf_name(gguf_name: str) -> str:
    if gguf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[gguf_name]
    match = _LAYER_RE.match(gguf_name)
    if match is None or match.group(2) not in _LAYER_NAMES:
        raise ValueError(f"unknown GGUF tensor {gguf_name!r}")
    layer, part, kind = match.groups()
    return f"model.layers.{layer}.{_LAYER_NAMES[part]}.{kind}"


def unpermute_rotary(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Undo llama.cpp's `permute` of q/k rows (HF rotate-half order → interleaved pairs).

    llama.cpp: w.reshape(heads, 2, head_dim // 2, ...).swapaxes(1, 2); this is its inverse.
    weight: [num_heads * head_dim, hidden] (or [num_heads * head_dim] for a bias)
    """
    head_dim = weight.shape[0] // num_heads
    rest = weight.shape[1:]
    # [heads, head_dim // 2, 2, ...] → [heads, 2, head_dim // 2, ...]
    out = weight.reshape(num_heads, head_dim // 2, 2, *rest).transpose(1, 2)
    return out.reshape(weight.shape).contiguous()


def permute_rotary(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    """llama.cpp's `permute` (what convert_hf_to_gguf.py does); used to write test GGUFs."""
    head_dim = weight.shape[0] // num_heads
    rest = weight.shape[1:]
    out = weight.reshape(num_heads, 2, head_dim // 2, *rest).transpose(1, 2)
    return out.reshape(weight.shape).contiguous()


def _metadata(reader: GGUFReader) -> dict[str, Any]:
    """Scalar and string metadata (arrays such as the token list are skipped: large and unused)."""
    out: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key.startswith("tokenizer.ggml.") and key.endswith(("tokens", "token_type", "merges", "scores")):
            continue
        out[key] = field.contents()
    return out


def _rope_freqs_scaling(reader: GGUFReader, config: dict[str, Any]) -> dict[str, Any] | None:
    """Llama 3.x rope scaling, which llama.cpp's converter stores as a `rope_freqs` tensor.

    convert_hf_to_gguf.py turns HF's llama3 rope_scaling (factor, low/high_freq_factor, original
    context) into one divisor per rotary frequency, and llama.cpp rotates by inv_freq / divisor.
    The GGUF keeps only the divisors, so they are written back as HF's `longrope` with the same
    list for short and long sequences and no attention factor: exactly inv_freq / divisor, a form
    transformers reads too.
    """
    tensor = next((t for t in reader.tensors if t.name == ROPE_FREQS), None)
    if tensor is None:
        return None
    divisors = dequantize(tensor.data, tensor.tensor_type).astype(np.float32).reshape(-1)  # [head_dim // 2]
    if divisors.shape[0] * 2 != config["head_dim"]:
        raise ValueError(f"{ROPE_FREQS} has {divisors.shape[0]} values; head_dim {config['head_dim']} needs "
                         f"{config['head_dim'] // 2}")
    factors = [float(d) for d in divisors]
    return {"rope_type": "longrope", "short_factor": factors, "long_factor": factors, "factor": 1.0,
            "attention_factor": 1.0, "original_max_position_embeddings": config["max_position_embeddings"]}


def _rope_scaling(meta: dict[str, Any], arch: str) -> dict[str, Any] | None:
    kind = meta.get(f"{arch}.rope.scaling.type")
    factor = meta.get(f"{arch}.rope.scaling.factor")
    if kind in (None, "none") or not factor:
        return None
    scaling: dict[str, Any] = {"rope_type": str(kind), "factor": float(factor)}
    original = meta.get(f"{arch}.rope.scaling.original_context_length")
    if original:
        scaling["original_max_position_embeddings"] = int(original)
    return scaling
