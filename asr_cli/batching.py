"""Batches of utterances of similar length, and their padding: shared by training and inference."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def bucket_by_length(lengths: Sequence[int], batch_frames: int, order: Sequence[int] | None = None) -> list[list[int]]:
    """Indices in `order` (default: by length, shortest first), cut into batches whose padded size (longest *
    count) stays within `batch_frames`; an item longer than the budget gets a batch of its own."""
    if order is None:
        order = np.argsort(np.asarray(lengths), kind="stable")
    batches, current, longest = [], [], 0
    for index in order:
        new_longest = max(longest, int(lengths[index]))
        if current and new_longest * (len(current) + 1) > batch_frames:
            batches.append(current)
            current, new_longest = [], int(lengths[index])
        current.append(int(index))
        longest = new_longest
    if current:
        batches.append(current)
    return batches


def pad_batch(frames: Sequence[torch.Tensor], fill: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, F) features padded with the (F,) `fill` to the longest (at least one frame), and (B,) lengths."""
    lengths = torch.tensor([len(f) for f in frames])
    features = fill.to(torch.float32).repeat(len(frames), max(int(lengths.max()), 1), 1)
    for row, utterance_frames in enumerate(frames):
        features[row, : len(utterance_frames)] = utterance_frames
    return features, lengths


def padding_waste(batches: list[list[int]], lengths: Sequence[int]) -> float:
    """Fraction of the padded frames of these batches that are padding."""
    real = sum(lengths[i] for batch in batches for i in batch)
    padded = sum(max(lengths[i] for i in batch) * len(batch) for batch in batches)
    return 1 - real / padded if padded else 0.0
