"""ForwardBatch: the only thing the scheduler hands the runner (host lists, no tensors)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ForwardBatch:
    """A flattened, unpadded step. Sequence i contributes query_lens[i] tokens (its next chunk of
    prompt, or one decode token) at the end of a context of seq_lens[i] tokens.

    sample_rows[j] is the row in input_ids whose logits produce sequence sample_seqs[j]'s next
    token (only sequences whose whole context is now computed sample; a partial prefill chunk does not).
    A sequence with speculative drafts samples at several consecutive rows (engine/speculative.py).
    """

    input_ids: list[int] = field(default_factory=list)  # [T]
    positions: list[int] = field(default_factory=list)  # [T]
    query_lens: list[int] = field(default_factory=list)  # [num_seqs]
    seq_lens: list[int] = field(default_factory=list)  # [num_seqs]
    block_tables: list[list[int]] = field(default_factory=list)  # [num_seqs][blocks]
    sample_rows: list[int] = field(default_factory=list)  # [S]
    sample_seqs: list[int] = field(default_factory=list)  # [S]

    @property
    def num_tokens(self) -> int:
        return len(self.input_ids)

    @property
    def num_seqs(self) -> int:
        return len(self.query_lens)

    def add(self, token_ids: list[int], start: int, num_new: int, block_table: list[int],
            num_drafts: int = 0) -> None:
        """Append a sequence's chunk token_ids[start:start + num_new]. The last num_drafts of
        token_ids are speculative drafts: the rows before each draft and after the last all sample."""
        end = start + num_new
        self.input_ids.extend(token_ids[start:end])
        self.positions.extend(range(start, end))
        self.query_lens.append(num_new)
        self.seq_lens.append(end)
        self.block_tables.append(block_table)
        if end == len(token_ids):
            last = len(self.input_ids) - 1
            self.sample_rows.extend(range(last - num_drafts, last + 1))
            self.sample_seqs.extend([self.num_seqs - 1] * (num_drafts + 1))
