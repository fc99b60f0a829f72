"""Tiny random-weight models for tests: HF safetensors folders and GGUF files, no network.

The vocabulary is the default model's (49152 tokens) and so is the tokenizer (with its chat
template), so the real tokenizer works on these models. Weights are drawn with a large enough
spread that a wrong name, transpose or q/k permutation visibly changes the logits.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch
from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter
from gguf.quants import quantize
from safetensors.torch import load_file

from sluicegate.engine.models.default_model import default_model_path
from sluicegate.engine.models.gguf_loader import permute_rotary
from sluicegate.engine.models.tokenizer import load_tokenizer

TINY_VOCAB = 49152


def tiny_config(family: str = "llama", **overrides: Any) -> Any:
    """A transformers config of `family` (llama, mistral, qwen2): hidden 64, 2 layers, 4 heads,
    2 kv heads."""
    from transformers import LlamaConfig, MistralConfig, Qwen2Config

    common: dict[str, Any] = dict(
        vocab_size=TINY_VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        rms_norm_eps=1e-5, rope_theta=10000.0, bos_token_id=1, eos_token_id=2,
    )
    if family == "llama":
        return LlamaConfig(**{**common, "tie_word_embeddings": True, **overrides})
    if family == "qwen2":
        return Qwen2Config(**{**common, "tie_word_embeddings": False, **overrides})
    if family == "mistral":
        return MistralConfig(**{**common, "tie_word_embeddings": False, "sliding_window": None, **overrides})
    raise ValueError(f"unknown family {family!r}")


def make_tiny_hf_model(dir: Path, family: str = "llama", seed: int = 0, **overrides: Any) -> Path:
    """Save a random tiny model of `family` (+ the default tokenizer) in `dir`."""
    from transformers import AutoModelForCausalLM

    config = tiny_config(family, **overrides)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.copy_(1.0 + 0.1 * torch.randn_like(param))
            elif name.endswith(".bias"):
                param.copy_(0.5 * torch.randn_like(param))
            else:
                param.copy_(0.2 * torch.randn_like(param))
    dir = Path(dir)
    model.save_pretrained(str(dir), safe_serialization=True)
    load_tokenizer(None).save_pretrained(str(dir))
    return dir


# HF name pieces → llama.cpp names (the inverse of engine.models.gguf_loader's table)
_HF_TO_GGUF_LAYER = {
    "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
_HF_TO_GGUF_GLOBAL = {
    "model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}


def gguf_name(hf_name: str) -> str:
    if hf_name in _HF_TO_GGUF_GLOBAL:
        return _HF_TO_GGUF_GLOBAL[hf_name]
    _, _, layer, rest = hf_name.split(".", 3)
    part, kind = rest.rsplit(".", 1)
    return f"blk.{layer}.{_HF_TO_GGUF_LAYER[part]}.{kind}"


def make_tiny_gguf(path: Path, hf_dir: Path, qtype: GGMLQuantizationType, with_tokenizer: bool = True) -> Path:
    """Write the HF folder's model as a GGUF the way llama.cpp would (names, q/k permutation).

    2-D weights are stored in `qtype` (anything gguf.quants.quantize supports: F32, F16, BF16,
    Q8_0, Q4_0, Q4_1, Q5_0, ...); norms and biases stay F32 as llama.cpp keeps them.
    with_tokenizer=False leaves out the (slow to write) tokenizer: such a file has weights only.
    """
    config = json.loads((Path(hf_dir) / "config.json").read_text())
    arch = config["model_type"]
    writer = GGUFWriter(str(path), arch)
    _write_metadata(writer, config, arch)
    if with_tokenizer:
        _copy_tokenizer_metadata(writer)
    state = load_file(str(Path(hf_dir) / "model.safetensors"))
    if config.get("tie_word_embeddings"):
        state.pop("lm_head.weight", None)
    rope_freqs = llama3_rope_freqs(config)
    if rope_freqs is not None:
        writer.add_tensor("rope_freqs.weight", rope_freqs)
    for name, tensor in state.items():
        data = tensor.float()
        if arch == "llama" and ".q_proj." in name:
            data = permute_rotary(data, config["num_attention_heads"])
        elif arch == "llama" and ".k_proj." in name:
            data = permute_rotary(data, config["num_key_value_heads"])
        array = data.numpy()
        if array.ndim == 1 or qtype == GGMLQuantizationType.F32:
            writer.add_tensor(gguf_name(name), array.astype(np.float32))
        elif qtype == GGMLQuantizationType.F16:
            writer.add_tensor(gguf_name(name), array.astype(np.float16))
        else:
            writer.add_tensor(gguf_name(name), quantize(array, qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path)


def llama3_rope_freqs(config: dict[str, Any]) -> np.ndarray | None:
    """What llama.cpp's converter writes for HF llama3 rope scaling: one divisor per rotary
    frequency (1 for short wavelengths, `factor` for long ones, a smooth blend between)."""
    scaling = config.get("rope_scaling") or config.get("rope_parameters") or {}
    if scaling.get("rope_type") != "llama3":
        return None
    theta = float(config.get("rope_theta") or scaling["rope_theta"])
    dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_len = scaling["original_max_position_embeddings"]
    divisors = []
    for freq in 1.0 / (theta ** (np.arange(0, dim, 2, dtype=np.float32) / dim)):
        wavelen = 2 * math.pi / freq
        if wavelen < old_len / high:
            divisors.append(1.0)
        elif wavelen > old_len / low:
            divisors.append(factor)
        else:
            smooth = (old_len / wavelen - low) / (high - low)
            divisors.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(divisors, dtype=np.float32)  # [head_dim // 2]


def _write_metadata(writer: GGUFWriter, config: dict[str, Any], arch: str) -> None:
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_rope_freq_base(float(config.get("rope_theta") or config["rope_parameters"]["rope_theta"]))
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(config["vocab_size"])
    writer.add_rope_dimension_count(config["hidden_size"] // config["num_attention_heads"])


@functools.lru_cache(maxsize=1)
def _default_tokenizer_fields() -> dict[str, Any]:
    fields = GGUFReader(str(default_model_path())).fields  # ~1.5 s: read it once per process
    return {k: f.contents() for k, f in fields.items() if k.startswith("tokenizer.")}


def _copy_tokenizer_metadata(writer: GGUFWriter) -> None:
    """The default model's tokenizer (tokens, merges, special ids, chat template)."""
    fields = _default_tokenizer_fields()

    def get(key: str) -> Any:
        return fields[key]

    writer.add_tokenizer_model(get("tokenizer.ggml.model"))
    writer.add_tokenizer_pre(get("tokenizer.ggml.pre"))
    writer.add_token_list(get("tokenizer.ggml.tokens"))
    writer.add_token_types(get("tokenizer.ggml.token_type"))
    writer.add_token_merges(get("tokenizer.ggml.merges"))
    writer.add_bos_token_id(get("tokenizer.ggml.bos_token_id"))
    writer.add_eos_token_id(get("tokenizer.ggml.eos_token_id"))
    writer.add_unk_token_id(get("tokenizer.ggml.unknown_token_id"))
    writer.add_pad_token_id(get("tokenizer.ggml.padding_token_id"))
    writer.add_add_bos_token(False)
    writer.add_chat_template(get("tokenizer.chat_template"))


__all__ = ["gguf", "make_tiny_gguf", "make_tiny_hf_model", "tiny_config"]
