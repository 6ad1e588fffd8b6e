"""Decoding CTC outputs: greedy (batched argmax, collapse repeats, drop blanks)."""

from __future__ import annotations

import torch

from .text import BLANK_INDEX


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """Best path per utterance: (B, T, V) log-probabilities and (B,) lengths -> label ids per utterance."""
    best = log_probs.argmax(dim=-1)  # (B, T)
    changed = torch.ones_like(best, dtype=torch.bool)
    changed[:, 1:] = best[:, 1:] != best[:, :-1]
    valid = torch.arange(best.shape[1], device=best.device)[None, :] < lengths.to(best.device)[:, None]
    keep = changed & valid & (best != BLANK_INDEX)
    best, keep = best.cpu(), keep.cpu()
    return [row[mask].tolist() for row, mask in zip(best, keep)]
