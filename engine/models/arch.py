"""ModelArch: the shape of a decoder-only transformer, read from an HF config.json dict.

Frozen and hashable so it can key caches (compiled kernels, CUDA graphs) and sit inside
frozen configs. Only the Llama-family layout is covered: Llama, SmolLM2, Mistral, Qwen2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")


@dataclass(frozen=True)
class ModelArch:
    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    # ((key, value), ...) sorted by key, e.g. (("factor", 8.0), ("rope_type", "llama3"), ...)
    rope_scaling: tuple[tuple[str, Any], ...] | None
    max_position_embeddings: int
    tie_word_embeddings: bool
    attention_bias: bool  # q/k/v projections carry a bias (Qwen2)
    bos_token_id: int | None
    eos_token_ids: tuple[int, ...]
    sliding_window: int | None = None  # Mistral v0.1; None: full attention

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    def rope_scaling_dict(self) -> dict[str, Any] | None:
        return None if self.rope_scaling is None else dict(self.rope_scaling)

    @classmethod
    def from_hf_config(cls, config: dict[str, Any], extra_eos_ids: tuple[int, ...] = ()) -> ModelArch:
        """Build from a config.json dict; extra_eos_ids: e.g. generation_config.json's eos ids."""
        model_type = str(config.get("model_type", "llama"))
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(
                f"unsupported model_type {model_type!r}; supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
            )
        hidden = int(config["hidden_size"])
        num_heads = int(config["num_attention_heads"])
        head_dim = config.get("head_dim") or hidden // num_heads
        eos = _as_ids(config.get("eos_token_id"))
        eos += tuple(i for i in extra_eos_ids if i not in eos)
        return cls(
            model_type=model_type,
            vocab_size=int(config["vocab_size"]),
            hidden_size=hidden,
            intermediate_size=int(config["intermediate_size"]),
            num_layers=int(config["num_hidden_layers"]),
            num_heads=num_heads,
            num_kv_heads=int(config.get("num_key_value_heads") or num_heads),
            head_dim=int(head_dim),
            rms_norm_eps=float(config.get("rms_norm_eps", 1e-6)),
            rope_theta=float(_rope_theta(config)),
            rope_scaling=_freeze_rope_scaling(config),
            max_position_embeddings=int(config.get("max_position_embeddings", 2048)),
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
            attention_bias=_attention_bias(config, model_type),
            bos_token_id=config.get("bos_token_id"),
            eos_token_ids=eos,
            sliding_window=_sliding_window(config),
        )


def _as_ids(value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    if isinstance(value, int):
        return (value,)
    return tuple(int(v) for v in value)


def _rope_theta(config: dict[str, Any]) -> float:
    # transformers 5 moved rope_theta into rope_parameters; older configs keep it top level.
    params = config.get("rope_parameters") or {}
    return float(config.get("rope_theta") or params.get("rope_theta") or 10000.0)


def _freeze_rope_scaling(config: dict[str, Any]) -> tuple[tuple[str, Any], ...] | None:
    scaling = config.get("rope_scaling") or config.get("rope_parameters")
    if not scaling:
        return None
    items = {k: v for k, v in scaling.items() if k != "rope_theta"}
    kind = items.get("rope_type", items.get("type"))
    if kind in (None, "default"):
        return None
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in items.items()))


def _attention_bias(config: dict[str, Any], model_type: str) -> bool:
    if "attention_bias" in config:
        return bool(config["attention_bias"])
    return model_type == "qwen2"  # Qwen2 configs do not say it; its q/k/v always have a bias


def _sliding_window(config: dict[str, Any]) -> int | None:
    window = config.get("sliding_window")
    if window is None or (config.get("model_type") == "qwen2" and not config.get("use_sliding_window")):
        return None
    return int(window)
