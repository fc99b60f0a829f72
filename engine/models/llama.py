"""Llama-family decoder (Llama, SmolLM2, Mistral, Qwen2) as a functional forward on a paged KV cache.

Weights stay plain tensors (no nn.Module): q/k/v and gate/up are fused once at load, so a layer
is four matmuls. The attention backend owns the cache layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sluicegate.engine.attention.base import AttentionBackend
from sluicegate.engine.attention.metadata import AttentionMetadata
from sluicegate.engine.models.arch import ModelArch
from sluicegate.engine.models.int4_weights import Int4Source, int4_applies
from sluicegate.engine.models.linear import Linear
from sluicegate.engine.models.rope import apply_rope, rope_cache, rotation_signs


@dataclass
class LayerWeights:
    input_norm: torch.Tensor  # [H]
    qkv: Linear  # [(heads + 2 * kv_heads) * D, H], bias [(heads + 2 * kv_heads) * D] (Qwen2)
    o_proj: Linear  # [H, heads * D]
    post_norm: torch.Tensor  # [H]
    gate_up: Linear  # [2 * I, H]
    down: Linear  # [H, I]


class LlamaModel:
    def __init__(self, arch: ModelArch, weights: dict[str, torch.Tensor], backend: AttentionBackend,
                 max_positions: int, int4_source: Int4Source | None = None) -> None:
        """int4_source: builds a fused Linear's exact 4-bit weight from its checkpoint names (None:
        bf16 only)."""
        self.arch = arch
        self.backend = backend
        self.embed = weights["model.embed_tokens.weight"]  # [V, H]
        self.norm = weights["model.norm.weight"]
        self.lm_head = Linear(weights.get("lm_head.weight", self.embed))  # tied when absent
        self.dtype = self.embed.dtype
        self.device = self.embed.device
        self.layers = [self._fuse(weights, i, int4_source) for i in range(arch.num_layers)]
        scaling = dict(arch.rope_scaling) if arch.rope_scaling else None
        self.cos, sin = rope_cache(arch.head_dim, arch.rope_theta, scaling, max_positions,
                                   self.device, self.dtype)  # [P, D] each
        self.signed_sin = rotation_signs(sin)
        self.scale = arch.head_dim ** -0.5
        self.q_size = arch.num_heads * arch.head_dim
        self.kv_size = arch.num_kv_heads * arch.head_dim

    @staticmethod
    def _fuse(w: dict[str, torch.Tensor], i: int, int4_source: Int4Source | None) -> LayerWeights:
        p = f"model.layers.{i}."
        attn, mlp = p + "self_attn.", p + "mlp."

        def linear(names: list[str], bias: torch.Tensor | None = None) -> Linear:
            weight = torch.cat([w[name] for name in names]) if len(names) > 1 else w[names[0]]
            int4 = int4_source(names) if int4_source is not None and int4_applies(weight) else None
            return Linear(weight, bias, int4)

        bias = None
        if attn + "q_proj.bias" in w:
            bias = torch.cat([w[attn + "q_proj.bias"], w[attn + "k_proj.bias"], w[attn + "v_proj.bias"]])
        return LayerWeights(
            input_norm=w[p + "input_layernorm.weight"],
            qkv=linear([attn + "q_proj.weight", attn + "k_proj.weight", attn + "v_proj.weight"], bias),
            o_proj=linear([attn + "o_proj.weight"]),
            post_norm=w[p + "post_attention_layernorm.weight"],
            gate_up=linear([mlp + "gate_proj.weight", mlp + "up_proj.weight"]),
            down=linear([mlp + "down_proj.weight"]),
        )

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor,
                kv_caches: list[tuple[torch.Tensor, torch.Tensor]], meta: AttentionMetadata) -> torch.Tensor:
        """input_ids, positions: [T] -> final hidden states [T, H] (already normed)."""
        arch = self.arch
        eps = arch.rms_norm_eps
        hidden = F.embedding(input_ids, self.embed)  # [T, H]
        cos, sin = self.cos[positions, None], self.signed_sin[positions, None]  # [T, 1, D]
        qk_heads = arch.num_heads + arch.num_kv_heads
        residual = hidden
        for layer, (k_cache, v_cache) in zip(self.layers, kv_caches):
            x = F.rms_norm(residual, (arch.hidden_size,), layer.input_norm, eps)
            qkv = layer.qkv(x)  # [T, (heads + 2 kv) * D]
            qk = qkv[:, : self.q_size + self.kv_size].view(-1, qk_heads, arch.head_dim)  # [T, heads + kv, D]
            q, k = apply_rope(qk, cos, sin).split([arch.num_heads, arch.num_kv_heads], dim=1)  # views
            v = qkv[:, self.q_size + self.kv_size:].view(-1, arch.num_kv_heads, arch.head_dim)  # [T, kv, D]
            self.backend.store_kv(k, v, k_cache, v_cache, meta.slot_mapping)
            attn = self.backend.attend(q, k_cache, v_cache, meta, self.scale)  # [T, heads, D]
            residual = residual + layer.o_proj(attn.reshape(-1, self.q_size))
            x = F.rms_norm(residual, (arch.hidden_size,), layer.post_norm, eps)
            gate, up = layer.gate_up(x).chunk(2, dim=-1)  # [T, I] each
            residual = residual + layer.down(F.silu(gate) * up)
        return F.rms_norm(residual, (arch.hidden_size,), self.norm, eps)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [S, H] -> logits [S, V] in fp32."""
        return self.lm_head(hidden).float()
