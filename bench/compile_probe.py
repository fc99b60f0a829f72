"""Would torch.compile make the CPU decode step faster? The decode forward as one module, compiled by
inductor with freezing (weights as constants, so it prepacks them for oneDNN) for one fixed batch
size, the paged-KV write + attention kept eager behind an opaque custom op; timed against the
engine's eager forward on the same weights, KV cache and metadata, interleaved.

    python bench/compile_probe.py [--batch 1] [--threads 1] [--rounds 3]

Prints compile seconds, the largest logit difference, whether greedy tokens agree, and ms per
forward (logits included) for both, per round.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from decode_profile import _fill  # noqa: E402

from sluicegate.engine.attention import torch_backend  # noqa: E402
from sluicegate.engine.llm import build_config  # noqa: E402
from sluicegate.engine.llm_engine import LLMEngine  # noqa: E402
from sluicegate.engine.models.llama import LlamaModel  # noqa: E402
from sluicegate.engine.models.rope import apply_rope  # noqa: E402


@torch.library.custom_op("sluicegate_probe::store_attend", mutates_args=("k_cache", "v_cache"))
def store_attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                 slot_mapping: torch.Tensor, block_tables: torch.Tensor, seq_lens: torch.Tensor,
                 scale: float) -> torch.Tensor:
    """The eager store + decode attention, opaque to inductor: q [B, H, D] -> [B, H, D]."""
    torch_backend.store_kv(k, v, k_cache, v_cache, slot_mapping)
    return torch_backend._attend_decode(q, k_cache, v_cache, block_tables, seq_lens, int(seq_lens.max()), scale)


@store_attend.register_fake
def _(q, k, v, k_cache, v_cache, slot_mapping, block_tables, seq_lens, scale):  # noqa: ANN001, ANN202
    return torch.empty_like(q)


def _frozen(t: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(t, requires_grad=False)


class DecodeForward(nn.Module):
    """LlamaModel.forward + logits for decode-only steps, with plain weights as parameters."""

    def __init__(self, model: LlamaModel) -> None:
        super().__init__()
        self.model = model
        self.embed, self.norm = _frozen(model.embed), _frozen(model.norm)
        self.cos, self.sin = _frozen(model.cos), _frozen(model.signed_sin)
        self.ln1 = nn.ParameterList([_frozen(layer.input_norm) for layer in model.layers])
        self.ln2 = nn.ParameterList([_frozen(layer.post_norm) for layer in model.layers])
        self.qkv = nn.ParameterList([_frozen(layer.qkv.weight) for layer in model.layers])
        self.o = nn.ParameterList([_frozen(layer.o_proj.weight) for layer in model.layers])
        self.gate_up = nn.ParameterList([_frozen(layer.gate_up.weight) for layer in model.layers])
        self.down = nn.ParameterList([_frozen(layer.down.weight) for layer in model.layers])
        self.lm_head = _frozen(model.lm_head.weight)

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, kv: list[torch.Tensor],
                slot_mapping: torch.Tensor, block_tables: torch.Tensor, seq_lens: torch.Tensor) -> torch.Tensor:
        m, arch = self.model, self.model.arch
        eps, d = arch.rms_norm_eps, arch.head_dim
        cos, sin = self.cos[positions, None], self.sin[positions, None]  # [T, 1, D]
        residual = F.embedding(input_ids, self.embed)  # [T, H]
        for i in range(arch.num_layers):
            x = F.rms_norm(residual, (arch.hidden_size,), self.ln1[i], eps)
            qkv = F.linear(x, self.qkv[i])
            qk = qkv[:, : m.q_size + m.kv_size].view(-1, arch.num_heads + arch.num_kv_heads, d)
            q, k = apply_rope(qk, cos, sin).split([arch.num_heads, arch.num_kv_heads], dim=1)
            v = qkv[:, m.q_size + m.kv_size:].view(-1, arch.num_kv_heads, d)
            attn = store_attend(q.contiguous(), k.contiguous(), v.contiguous(), kv[2 * i], kv[2 * i + 1],
                                slot_mapping, block_tables, seq_lens, m.scale)
            residual = residual + F.linear(attn.reshape(-1, m.q_size), self.o[i])
            x = F.rms_norm(residual, (arch.hidden_size,), self.ln2[i], eps)
            gate, up = F.linear(x, self.gate_up[i]).chunk(2, dim=-1)
            residual = residual + F.linear(F.silu(gate) * up, self.down[i])
        return F.linear(F.rms_norm(residual, (arch.hidden_size,), self.norm, eps), self.lm_head).float()


def _ms(fn, n: int = 20) -> float:  # noqa: ANN001
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    engine = LLMEngine(build_config())
    _fill(engine, args.batch, 64, 512)
    model = engine.runner.model
    captured: dict[str, tuple] = {}
    original = model.forward
    model.forward = lambda *a: captured.setdefault("args", a) and original(*a)  # type: ignore[method-assign]
    engine.step()
    model.forward = original  # type: ignore[method-assign]
    input_ids, positions, kv_caches, meta = captured["args"]
    kv = [t for pair in kv_caches for t in pair]
    compiled_inputs = (input_ids, positions, kv, meta.slot_mapping, meta.block_tables, meta.seq_lens)

    def eager() -> torch.Tensor:
        meta.per_step.clear()
        return model.logits(model.forward(input_ids, positions, kv_caches, meta))

    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    start = time.perf_counter()
    compiled = torch.compile(DecodeForward(model).eval(), dynamic=False)
    with torch.no_grad():
        out = compiled(*compiled_inputs)
    print(f"batch {args.batch}, {args.threads} thread(s): compile {time.perf_counter() - start:.1f} s")
    ref = eager()
    print(f"max |logit diff| {(out - ref).abs().max().item():.4f}; greedy tokens equal: "
          f"{bool(torch.equal(out.argmax(-1), ref.argmax(-1)))}")
    with torch.no_grad():
        _ms(lambda: compiled(*compiled_inputs), 5)
        _ms(eager, 5)
        for r in range(args.rounds):
            c = _ms(lambda: compiled(*compiled_inputs))
            e = _ms(eager)
            print(f"round {r}: compiled {c:.2f} ms, eager {e:.2f} ms (compiled / eager {c / e:.3f})")


if __name__ == "__main__":
    main()
