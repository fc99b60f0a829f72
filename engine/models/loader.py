"""load_model(): one entry point for HF safetensors folders and GGUF files.

A GGUF file is converted once into an HF folder in the cache (engine.models.gguf_loader), so
every model is finally read the same way: config.json → ModelArch, safetensors → weights.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerFast

from sluicegate.engine.models.arch import ModelArch
from sluicegate.engine.models.default_model import resolve_model_path, served_model_name
from sluicegate.engine.models.gguf_loader import gguf_hf_dir
from sluicegate.engine.models.safetensors_loader import load_safetensors_weights, read_hf_config
from sluicegate.engine.models.tokenizer import load_tokenizer_dir

Progress = Callable[[str], None]


def print_progress(message: str) -> None:
    print(f"[sluicegate] {message}", file=sys.stderr, flush=True)


@dataclass
class LoadedModel:
    """Everything the engine and gateway need from a model, weights already on the device.

    weights: HF Llama names (model.embed_tokens.weight, model.layers.{i}.self_attn.q_proj.weight,
    ...); lm_head.weight only when the embeddings are untied.
    """

    arch: ModelArch
    weights: dict[str, torch.Tensor]
    tokenizer: PreTrainedTokenizerFast
    chat_template: str | None
    name: str  # the served model name
    path: Path  # what the user passed (the GGUF file, not its cache folder)
    folder: Path  # the HF folder the weights were read from (a GGUF's converted cache folder)
    max_model_len: int


def load_model(
    model: str | Path | None,
    dtype: torch.dtype,
    device: torch.device,
    progress: Progress | None = print_progress,
) -> LoadedModel:
    """Load an HF safetensors folder or a GGUF file (None: the embedded default model)."""
    start = time.perf_counter()
    path = resolve_model_path(model, progress)
    name = served_model_name(path, model)
    folder = path if path.is_dir() else gguf_hf_dir(path, progress)
    config, gen_eos = read_hf_config(folder)
    tokenizer = load_tokenizer_dir(folder)
    extra_eos = gen_eos + ((tokenizer.eos_token_id,) if tokenizer.eos_token_id is not None else ())
    arch = ModelArch.from_hf_config(config, extra_eos_ids=extra_eos)
    weights = load_safetensors_weights(folder, arch, dtype, device, progress)
    if progress is not None:
        progress(f"loaded {name} ({arch.model_type}, {arch.num_layers} layers, "
                 f"{dtype}, {device}) in {time.perf_counter() - start:.1f} s")
    chat_template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None
    return LoadedModel(
        arch=arch,
        weights=weights,
        tokenizer=tokenizer,
        chat_template=chat_template,
        name=name,
        path=path,
        folder=folder,
        max_model_len=_max_model_len(arch),
    )


def _max_model_len(arch: ModelArch) -> int:
    """The longest sequence served exactly. Attention here is always full, so a sliding-window
    model (Mistral v0.1) is capped at its window, where full and windowed attention agree."""
    if arch.sliding_window is not None:
        return min(arch.max_position_embeddings, arch.sliding_window)
    return arch.max_position_embeddings
