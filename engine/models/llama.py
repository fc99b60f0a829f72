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
from sluicegate.engine.models.linear import Linear
from sluicegate.engine.models.quantized import QuantizedSource, quantized_applies
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
                 max_positions: int, quantized: QuantizedSource | None = None, cpu_kernels: bool = False) -> None:
        """quantized: builds a (fused) Linear's exact low-bit weight from its checkpoint names (None:
        bf16 only). cpu_kernels: the engine's CPU kernels are loaded (LLMEngine decides); the layers'
        norms, rope + KV write and SiLU run through them where this model's weights are bf16 on CPU
        and the backend keeps the paged cache's standard layout."""
        self.arch = arch
        self.backend = backend
        self.embed = weights["model.embed_tokens.weight"]  # [V, H]
        self.norm = weights["model.norm.weight"]
        head = "lm_head.weight" if "lm_head.weight" in weights else "model.embed_tokens.weight"  # tied when absent
        self.lm_head = _linear(weights, [head], None, quantized)
        self.dtype = self.embed.dtype
        self.device = self.embed.device
        self.layers = [self._fuse(weights, i, quantized) for i in range(arch.num_layers)]
        scaling = dict(arch.rope_scaling) if arch.rope_scaling else None
        self.cos, sin = rope_cache(arch.head_dim, arch.rope_theta, scaling, max_positions,
                                   self.device, self.dtype)  # [P, D] each
        self.signed_sin = rotation_signs(sin)
        self.scale = arch.head_dim ** -0.5
        self.q_size = arch.num_heads * arch.head_dim
        self.kv_size = arch.num_kv_heads * arch.head_dim
        self.cpu_kernels = (cpu_kernels and self.device.type == "cpu" and self.dtype == torch.bfloat16
                            and backend.name == "torch")

    @staticmethod
    def _fuse(w: dict[str, torch.Tensor], i: int, quantized: QuantizedSource | None) -> LayerWeights:
        p = f"model.layers.{i}."
        attn, mlp = p + "self_attn.", p + "mlp."

        def linear(names: list[str], bias: torch.Tensor | None = None) -> Linear:
            return _linear(w, names, bias, quantized)

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
        ops = _FusedOps(self) if self.cpu_kernels else _EagerOps(self)
        residual = F.embedding(input_ids, self.embed)  # [T, H]
        cos, sin = self.cos[positions, None], self.signed_sin[positions, None]  # [T, 1, D] each, contiguous
        delta: torch.Tensor | None = None  # what the last block adds to the residual stream
        for layer, (k_cache, v_cache) in zip(self.layers, kv_caches):
            residual, x = ops.add_norm(residual, delta, layer.input_norm)
            q = ops.rope_store_kv(layer.qkv(x), cos, sin, k_cache, v_cache, meta)  # [T, heads, D]
            attn = self.backend.attend(q, k_cache, v_cache, meta, self.scale)  # [T, heads, D]
            residual, x = ops.add_norm(residual, layer.o_proj(attn.reshape(-1, self.q_size)), layer.post_norm)
            delta = layer.down(ops.silu_mul(layer.gate_up(x)))  # gate_up: [T, 2 * I]
        return ops.add_norm(residual, delta, self.norm)[1]

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [S, H] -> logits [S, V] in fp32."""
        return self.lm_head(hidden).float()


def _linear(weights: dict[str, torch.Tensor], names: list[str], bias: torch.Tensor | None,
            quantized: QuantizedSource | None) -> Linear:
    """The Linear of these checkpoint weights (rows concatenated in order), with their stored
    low-bit codes where they have exact ones and the compute weight may use them."""
    weight = torch.cat([weights[name] for name in names]) if len(names) > 1 else weights[names[0]]
    codes = quantized(names) if quantized is not None and quantized_applies(weight) else None
    return Linear(weight, bias, codes)


class _EagerOps:
    """A layer's small ops in torch (any device and dtype; the reference the kernels match)."""

    def __init__(self, model: LlamaModel) -> None:
        self.model = model
        self.shape = (model.arch.hidden_size,)
        self.eps = model.arch.rms_norm_eps

    def add_norm(self, residual: torch.Tensor, delta: torch.Tensor | None,
                 weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (residual + delta, its RMSNorm): [T, H] each."""
        if delta is not None:
            residual = residual + delta
        return residual, F.rms_norm(residual, self.shape, weight, self.eps)

    def rope_store_kv(self, qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, k_cache: torch.Tensor,
                      v_cache: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        """qkv [T, (heads + 2 kv) * D], cos / sin [T, 1, D] -> q [T, heads, D] rotated; k (rotated)
        and v go to the cache."""
        m, arch = self.model, self.model.arch
        qk = qkv[:, : m.q_size + m.kv_size].view(-1, arch.num_heads + arch.num_kv_heads, arch.head_dim)
        q, k = apply_rope(qk, cos, sin).split([arch.num_heads, arch.num_kv_heads], dim=1)
        v = qkv[:, m.q_size + m.kv_size:].view(-1, arch.num_kv_heads, arch.head_dim)  # [T, kv, D]
        m.backend.store_kv(k, v, k_cache, v_cache, meta.slot_mapping)
        return q

    def silu_mul(self, gate_up: torch.Tensor) -> torch.Tensor:
        """[T, 2 * I] -> silu(gate) * up [T, I]."""
        gate, up = gate_up.chunk(2, dim=-1)
        return F.silu(gate) * up


class _FusedOps(_EagerOps):
    """The same ops, one CPU kernel each (engine/kernels/csrc/cpu_ops.cpp): bit-identical results but
    for the norm, which sums its squares in another order."""

    def add_norm(self, residual: torch.Tensor, delta: torch.Tensor | None,
                 weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if delta is None:
            return residual, torch.ops.sluicegate.rms_norm(residual, weight, self.eps)
        return torch.ops.sluicegate.add_rms_norm(residual, delta, weight, self.eps)

    def rope_store_kv(self, qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, k_cache: torch.Tensor,
                      v_cache: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        arch = self.model.arch
        return torch.ops.sluicegate.rope_store_kv(qkv, cos, sin, k_cache, v_cache, meta.slot_mapping,
                                                  arch.num_heads, arch.num_kv_heads)

    def silu_mul(self, gate_up: torch.Tensor) -> torch.Tensor:
        return torch.ops.sluicegate.silu_mul(gate_up)
