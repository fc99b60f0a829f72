"""Read an HF model folder: config.json and its safetensors (one file or a sharded index)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from sluicegate.engine.models.arch import ModelArch

# Buffers some checkpoints carry that are recomputed at load time, never weights.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def read_hf_config(folder: Path) -> tuple[dict[str, Any], tuple[int, ...]]:
    """config.json as a dict, plus generation_config.json's eos ids (chat models stop on them)."""
    config = json.loads((folder / "config.json").read_text())
    gen_path = folder / "generation_config.json"
    gen_eos: tuple[int, ...] = ()
    if gen_path.is_file():
        value = json.loads(gen_path.read_text()).get("eos_token_id")
        if isinstance(value, int):
            gen_eos = (value,)
        elif isinstance(value, list):
            gen_eos = tuple(int(v) for v in value)
    return config, gen_eos


def safetensors_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
        return [folder / name for name in sorted(set(weight_map.values()))]
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no *.safetensors files (only safetensors checkpoints load)")
    return files


def load_safetensors_weights(
    folder: Path,
    arch: ModelArch,
    dtype: torch.dtype,
    device: torch.device,
    progress: Callable[[str], None] | None = None,
) -> dict[str, torch.Tensor]:
    """All weights of the folder under HF Llama names, in `dtype` on `device`.

    A tied model's lm_head.weight is dropped (the forward reuses model.embed_tokens.weight).
    """
    weights: dict[str, torch.Tensor] = {}
    files = safetensors_files(folder)
    # Read straight onto the device where safetensors can, then cast there (fast on GPUs).
    read_device = "cpu" if device.type == "cpu" else str(device)
    for n, file in enumerate(files, 1):
        if progress is not None:
            progress(f"loading weights: file {n}/{len(files)} {file.name}")
        with safe_open(str(file), framework="pt", device=read_device) as f:
            for name in f.keys():
                if name.endswith(_IGNORED_SUFFIXES):
                    continue
                weights[name] = f.get_tensor(name).to(device=device, dtype=dtype)
    if arch.tie_word_embeddings:
        weights.pop("lm_head.weight", None)
    check_weight_names(weights, arch)
    return weights


def expected_weight_shapes(arch: ModelArch) -> dict[str, tuple[int, ...]]:
    """Every weight the Llama-family forward needs, by HF name, with its shape."""
    h, inter = arch.hidden_size, arch.intermediate_size
    shapes: dict[str, tuple[int, ...]] = {
        "model.embed_tokens.weight": (arch.vocab_size, h),
        "model.norm.weight": (h,),
    }
    if not arch.tie_word_embeddings:
        shapes["lm_head.weight"] = (arch.vocab_size, h)
    for i in range(arch.num_layers):
        p = f"model.layers.{i}."
        shapes[p + "input_layernorm.weight"] = (h,)
        shapes[p + "post_attention_layernorm.weight"] = (h,)
        shapes[p + "self_attn.q_proj.weight"] = (arch.q_size, h)
        shapes[p + "self_attn.k_proj.weight"] = (arch.kv_size, h)
        shapes[p + "self_attn.v_proj.weight"] = (arch.kv_size, h)
        shapes[p + "self_attn.o_proj.weight"] = (h, arch.q_size)
        if arch.attention_bias:
            shapes[p + "self_attn.q_proj.bias"] = (arch.q_size,)
            shapes[p + "self_attn.k_proj.bias"] = (arch.kv_size,)
            shapes[p + "self_attn.v_proj.bias"] = (arch.kv_size,)
        shapes[p + "mlp.gate_proj.weight"] = (inter, h)
        shapes[p + "mlp.up_proj.weight"] = (inter, h)
        shapes[p + "mlp.down_proj.weight"] = (h, inter)
    return shapes


def check_weight_names(weights: dict[str, torch.Tensor], arch: ModelArch) -> None:
    """Fail loudly on a missing, unexpected or misshapen weight rather than at the first forward."""
    expected = expected_weight_shapes(arch)
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise ValueError(f"weights do not match the {arch.model_type} layout: "
                         f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                         f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
    for name, shape in expected.items():
        if tuple(weights[name].shape) != shape:
            raise ValueError(f"{name}: shape {tuple(weights[name].shape)}, expected {shape}")


def float32_reader(folder: Path) -> Callable[[str], torch.Tensor]:
    """A function reading one named tensor of the folder's checkpoint in float32 (on the CPU), as
    stored: not rounded to the dtype the engine computes in."""
    where = {}
    for file in safetensors_files(folder):
        with safe_open(str(file), framework="pt") as f:
            where.update({name: file for name in f.keys()})

    def read(name: str) -> torch.Tensor:
        with safe_open(str(where[name]), framework="pt") as f:
            return f.get_tensor(name).float()

    return read
