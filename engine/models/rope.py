"""Rotary position embeddings (HF's rotate-half layout), with the config's scaling."""

from __future__ import annotations

import math

import torch


def inverse_frequencies(head_dim: int, theta: float, scaling: dict | None) -> tuple[torch.Tensor, float]:
    """inv_freq [head_dim // 2] and the attention factor to scale cos/sin by."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    rope_type = (scaling or {}).get("rope_type", (scaling or {}).get("type", "default"))
    if scaling is None or rope_type == "default":
        return inv_freq.float(), 1.0
    if rope_type == "linear":
        return (inv_freq / scaling["factor"]).float(), 1.0
    if rope_type == "llama3":
        factor = scaling["factor"]
        low, high = scaling.get("low_freq_factor", 1.0), scaling.get("high_freq_factor", 4.0)
        old_len = scaling["original_max_position_embeddings"]
        low_wavelen, high_wavelen = old_len / low, old_len / high
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
        smooth = (old_len / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        return torch.where(medium, smoothed, scaled).float(), 1.0
    if rope_type == "yarn":
        return _yarn(inv_freq, head_dim, theta, scaling)
    if rope_type == "longrope":
        return _longrope(inv_freq, scaling)
    raise ValueError(f"unsupported rope_scaling type {rope_type!r} "
                     f"(supported: default, linear, llama3, yarn, longrope)")


def _yarn(inv_freq: torch.Tensor, head_dim: int, theta: float, s: dict) -> tuple[torch.Tensor, float]:
    factor = s["factor"]
    old_len = s.get("original_max_position_embeddings", 4096)
    beta_fast, beta_slow = s.get("beta_fast", 32), s.get("beta_slow", 1)
    attention_factor = s.get("attention_factor") or (0.1 * math.log(factor) + 1.0)

    def correction_dim(rotations: float) -> float:
        return (head_dim * math.log(old_len / (rotations * 2 * math.pi))) / (2 * math.log(theta))

    low = max(math.floor(correction_dim(beta_fast)), 0)
    high = min(math.ceil(correction_dim(beta_slow)), head_dim - 1)
    ramp = ((torch.arange(head_dim // 2, dtype=torch.float64) - low) / max(high - low, 1e-3)).clamp(0, 1)
    extrapolation = 1 - ramp
    inv = inv_freq / factor * (1 - extrapolation) + inv_freq * extrapolation
    return inv.float(), float(attention_factor)


def _longrope(inv_freq: torch.Tensor, s: dict) -> tuple[torch.Tensor, float]:
    """One divisor per frequency. The cos/sin cache is built once for all positions, so only the
    form with one list for short and long sequences is served (what a Llama 3 GGUF becomes)."""
    if list(s["short_factor"]) != list(s["long_factor"]):
        raise ValueError("longrope with different short and long factors is not supported")
    factor = s.get("factor") or 1.0
    old_len = s.get("original_max_position_embeddings") or 1
    attention_factor = s.get("attention_factor")
    if attention_factor is None:  # transformers' default for longrope
        attention_factor = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(old_len))
    divisors = torch.tensor(s["short_factor"], dtype=torch.float64)  # [head_dim // 2]
    return (inv_freq / divisors).float(), float(attention_factor)


def rope_cache(head_dim: int, theta: float, scaling: dict | None, max_positions: int,
               device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin: [max_positions, head_dim], computed in fp32 then cast (as HF does)."""
    inv_freq, attn_factor = inverse_frequencies(head_dim, theta, scaling)
    t = torch.arange(max_positions, dtype=torch.float32)
    freqs = torch.outer(t, inv_freq)  # [P, D/2]
    emb = torch.cat([freqs, freqs], dim=-1)  # [P, D]
    return ((emb.cos() * attn_factor).to(device=device, dtype=dtype),
            (emb.sin() * attn_factor).to(device=device, dtype=dtype))


def rotation_signs(sin: torch.Tensor) -> torch.Tensor:
    """sin [..., D] -> the same with its first half negated: rotate-half as a roll times this."""
    half = sin.shape[-1] // 2
    return torch.cat([-sin[..., :half], sin[..., half:]], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """x: [T, heads, D]; cos, signed_sin: [T, 1, D] (gathered at the tokens' positions, the sin
    through rotation_signs). HF's x * cos + rotate_half(x) * sin, bit for bit: rotate_half(x) is
    cat(-x2, x1), and -x2 * s == x2 * -s exactly, so a roll by D/2 times the signed sin gives the
    same product in four ops instead of nine (q and k go through it together, once per layer)."""
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * signed_sin
