"""Weights a checkpoint stores in few bits, kept as stored for decode steps of a few rows on CPU.

A Linear may hold, beside its compute-dtype weight, the same weight as 4-bit codes (Q4_0 / Q4_1 /
Q4_K layers of a GGUF: engine/models/int4_weights.py, torch's int4 kernel) or as 8-bit codes (Q8_0
layers: engine/models/int8_weights.py, sluicegate's CPU kernel); calls of up to that weight's
max_rows rows read it. Both are built only where they hold the stored weights exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import torch

from sluicegate.engine.models.int4_weights import exact_int4, int4_available
from sluicegate.engine.models.int8_weights import exact_int8
from sluicegate.engine.models.safetensors_loader import float32_reader


class QuantizedWeight(Protocol):
    """A [N, K] weight as stored codes: x [M, K] -> x @ W.T for M up to max_rows."""

    @property
    def max_rows(self) -> int: ...

    def matmul(self, x: torch.Tensor) -> torch.Tensor: ...


QuantizedSource = Callable[[Sequence[str]], QuantizedWeight | None]


def quantized_source(folder: Path, int4: bool, int8: bool) -> QuantizedSource | None:
    """For an engine's Linears: a function from the checkpoint names of the weights one Linear fuses
    (rows concatenated in that order) to their exact 4-bit (when int4 and torch has the kernel) or
    else 8-bit (when int8: sluicegate's CPU kernels are loaded) codes, or None; None when neither
    applies. Weights are read in float32, as stored, not as computed."""
    int4 = int4 and int4_available()
    if not int4 and not int8:
        return None
    read_float32 = float32_reader(folder)

    def build(names: Sequence[str]) -> QuantizedWeight | None:
        weight = torch.cat([read_float32(name) for name in names])
        four = exact_int4(weight) if int4 else None
        return four if four is not None else (exact_int8(weight) if int8 else None)

    return build


def quantized_applies(weight: torch.Tensor) -> bool:
    """Whether a Linear on this (compute) weight may read stored codes: the kernels are CPU ones,
    and fp32 keeps its exact matmuls (greedy parity with HF is checked in fp32)."""
    return weight.device.type == "cpu" and weight.dtype == torch.bfloat16
