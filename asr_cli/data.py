"""Training data: examples from feature stores, length-bucketed batches, and the transforms batches pass
through (speaker normalisation, VTLP, SpecAugment).

A `BatchDataset` is built from a list of transforms: utterance transforms change each utterance's frames
(a batch's utterances at once, so that one draw serves the batch), batch transforms the padded batch.
Every random choice is a function of (seed, epoch, batch number, transform), never of a global generator,
so an interrupted epoch resumes with the same batches and the same masks.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .batching import bucket_by_length, pad_batch
from .cmvn import SpeakerNormalizer
from .config import ConfigError, FeatureConfig, NormalizeConfig, SpecAugmentConfig
from .errors import AsrCliError, some_of
from .features import vtlp_source_bins
from .store import FeatureStore
from .text import Vocabulary, normalize_text


@dataclass(frozen=True)
class Example:
    """One training utterance: where its frames are and its label ids."""

    store: int
    position: int
    num_frames: int
    labels: tuple[int, ...]
    speaker: str | None = None


@dataclass
class ExampleSet:
    """The usable examples of some stores, and what was left out and why."""

    examples: list[Example]
    skipped: dict[str, list[str]] = field(default_factory=dict)  # reason -> utterance ids
    missing_words: dict[str, int] = field(default_factory=dict)  # word -> utterances it kept out (phone units)

    def skipped_summary(self) -> str:
        summary = ", ".join(f"{len(ids)} {reason}" for reason, ids in self.skipped.items() if ids) or "none"
        if self.missing_words:
            common = sorted(self.missing_words, key=lambda word: -self.missing_words[word])[:5]
            summary += f" ({len(self.missing_words)} words, e.g. {', '.join(common)})"
        return summary


def open_stores(paths: Sequence[str], role: str) -> list[FeatureStore]:
    """Open stores for training, refusing empty ones and ones without transcripts."""
    stores = [FeatureStore(path) for path in paths]
    for store in stores:
        if len(store) == 0:
            raise AsrCliError(f"{role} store {store.path} has no utterances")
        untranscribed = [entry.id for entry in store if entry.text is None]
        if untranscribed:
            raise AsrCliError(
                f"{role} store {store.path}: {len(untranscribed)} utterance(s) without text "
                f"({some_of(untranscribed)}); "
                "training needs a transcript for every utterance"
            )
    for store in stores[1:]:
        require_same_features(stores[0], store)
    return stores


def require_same_features(reference: FeatureStore, other: FeatureStore) -> None:
    """Stores trained or validated together must hold the same features, not just the same dimension."""
    first, second = reference.feature_config.identity(), other.feature_config.identity()
    differing = [
        f"{name}: {first[name]!r} in {reference.path}, {second.get(name)!r} in {other.path}"
        for name in reference.feature_config.differences(other.feature_config)
    ]
    if differing:
        raise AsrCliError(
            "the stores were prepared with different feature options ("
            + "; ".join(differing)
            + "); prepare them with the same options"
        )


def build_examples(
    stores: Sequence[FeatureStore],
    vocabulary: Vocabulary,
    normalize: NormalizeConfig,
    subsample: int,
    skip_oov: bool,
    to_units: Callable[[str], tuple[str | None, list[str]]] | None = None,
) -> ExampleSet:
    """Encode every transcript; leave out (and count) what CTC cannot learn from.

    An utterance needs at least len(labels) + (repeated adjacent labels) output
    frames after subsampling, else its CTC loss is infinite. Characters outside
    the vocabulary are an error listing them, unless `skip_oov`. `to_units`
    turns a normalised text into the vocabulary's units (phones), or None and
    the words it cannot: such utterances are left out and counted
    (`missing_words` keeps how often each word was missing).
    """
    result = ExampleSet(
        [],
        {
            "empty transcript": [],
            "too short for its transcript": [],
            "unknown characters": [],
            "words missing from the lexicon": [],
        },
    )
    unknown: dict[str, str] = {}
    for store_index, store in enumerate(stores):
        for position, entry in enumerate(store):
            text = normalize_text(entry.text, normalize)
            if not text:
                result.skipped["empty transcript"].append(entry.id)
                continue
            if to_units is not None:
                text, missing_words = to_units(text)
                if text is None:
                    result.skipped["words missing from the lexicon"].append(entry.id)
                    for word in missing_words:
                        result.missing_words[word] = result.missing_words.get(word, 0) + 1
                    continue
            missing = vocabulary.unknown_characters(text)
            if missing:
                result.skipped["unknown characters"].append(entry.id)
                for character in missing:
                    unknown.setdefault(character, entry.id)
                continue
            labels = vocabulary.encode(text)
            repeats = sum(1 for a, b in zip(labels, labels[1:]) if a == b)
            if math.ceil(entry.num_frames / subsample) < len(labels) + repeats:
                result.skipped["too short for its transcript"].append(entry.id)
                continue
            result.examples.append(Example(store_index, position, entry.num_frames, tuple(labels), entry.speaker))
    if unknown and not skip_oov:
        listed = ", ".join(f"{character!r} (e.g. in {utterance})" for character, utterance in sorted(unknown.items()))
        raise AsrCliError(
            f"{len(result.skipped['unknown characters'])} utterance(s) use characters outside the vocabulary: {listed}; "
            "fix the transcripts or pass --skip-oov-utts to leave them out"
        )
    return result


def data_fingerprint(stores: Sequence[FeatureStore]) -> str:
    """A digest of the stores' utterances (ids, lengths, texts), to refuse resuming on other data."""
    digest = hashlib.sha256()
    for store in stores:
        for entry in store:
            digest.update(f"{entry.id}\t{entry.num_frames}\t{entry.text}\n".encode())
    return digest.hexdigest()


def make_batches(
    lengths: Sequence[int], batch_frames: int, seed: int, epoch: int, shuffle: bool = True
) -> list[list[int]]:
    """Length-bucketed batches whose padded size (longest * count) stays within `batch_frames`.

    Lengths are jittered by up to 5% before sorting, so batch composition
    changes from epoch to epoch; the order of batches is shuffled. An
    utterance longer than the budget gets a batch of its own.
    """
    rng = np.random.default_rng([seed, epoch])
    keys = np.asarray(lengths, dtype=np.float64)
    if shuffle:
        keys = keys * (1 + 0.05 * rng.random(len(lengths)))
    batches = bucket_by_length(lengths, batch_frames, order=np.argsort(keys, kind="stable"))
    if shuffle:
        rng.shuffle(batches)
    return batches


def rank_batches(batches: list[list[int]], rank: int, world_size: int) -> list[list[int]]:
    """This process's share of an epoch's batches, so that every utterance is in some share and every share
    has as many batches as the largest (DDP processes step together): a share that is short splits its
    largest batches in two (halves stay within the frame budget); a batch of one utterance is repeated."""
    if not batches:
        return []
    shares = [batches[r::world_size] for r in range(world_size)]
    target = max(len(share) for share in shares)
    share = [list(batch) for batch in shares[rank]] or [list(batches[rank % len(batches)])]
    while len(share) < target:
        largest = max(range(len(share)), key=lambda i: len(share[i]))
        batch = share[largest]
        if len(batch) < 2:
            share.append(list(batch))
            continue
        share[largest : largest + 1] = [batch[: len(batch) // 2], batch[len(batch) // 2 :]]
    return share


def require_speakers(stores: Sequence[FeatureStore], role: str) -> None:
    """Per-speaker CMVN in training needs a speaker for every utterance."""
    for store in stores:
        missing = store.utterances_without_speaker()
        if missing:
            raise AsrCliError(
                f"--cmvn speaker: {role} store {store.path} has {len(missing)} utterance(s) without a speaker "
                f"(e.g. {', '.join(missing[:3])}); give the manifest a speaker field and prepare it again, "
                "or use --cmvn global"
            )


class SpeakerNormalization:
    """Utterance transform: each utterance normalised by its speaker's statistics (cmvn.SpeakerNormalizer), as
    `decode` normalises its input for a model trained with `--cmvn speaker`."""

    seed_offset = 2

    def __init__(self, normalizer: SpeakerNormalizer) -> None:
        self.normalizer = normalizer

    def __call__(
        self, frames: list[torch.Tensor], examples: Sequence[Example], generator: torch.Generator
    ) -> list[torch.Tensor]:
        return [torch.from_numpy(self.normalizer(f.numpy(), e.speaker, e.store)) for f, e in zip(frames, examples)]


class Vtlp:
    """Utterance transform: vocal tract length perturbation (Jaitly & Hinton, 2013) on stored log-mel frames;
    each utterance's filterbank is warped by a factor drawn uniformly from [1 - max_warp, 1 + max_warp]."""

    seed_offset = 1

    def __init__(self, feature_config: FeatureConfig, max_warp: float) -> None:
        if feature_config.kind != "fbank" or feature_config.deltas:
            raise ConfigError(
                "vtlp_warp",
                "{0} warps the mel filterbank: it needs fbank features without deltas "
                f"(the stores hold {feature_config.kind}{' with deltas' if feature_config.deltas else ''})",
            )
        self.feature_config = feature_config
        self.max_warp = max_warp

    def __call__(
        self, frames: list[torch.Tensor], examples: Sequence[Example], generator: torch.Generator
    ) -> list[torch.Tensor]:
        factors = 1 + self.max_warp * (2 * torch.rand(len(frames), generator=generator) - 1)
        return [self.warp(f, float(factor)) for f, factor in zip(frames, factors)]

    def warp(self, frames: torch.Tensor, warp_factor: float) -> torch.Tensor:
        """(num_frames, num_mel_bins) log-mel frames, read at the warped filters' positions."""
        positions = torch.from_numpy(vtlp_source_bins(self.feature_config, warp_factor))
        lower = positions.floor().long()
        upper = torch.clamp(lower + 1, max=frames.shape[1] - 1)
        weight = positions - lower
        return frames[:, lower] * (1 - weight) + frames[:, upper] * weight


class SpecAugment:
    """Batch transform: frequency and time masks (Park et al., 2019) on a padded batch, filled with `fill`."""

    seed_offset = 0

    def __init__(self, config: SpecAugmentConfig, fill: torch.Tensor) -> None:
        self.config = config
        self.fill = fill

    def __call__(self, features: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return apply_spec_augment(features, lengths, self.fill, self.config, generator)


class BatchDataset(torch.utils.data.Dataset):
    """Item k is batch k of an epoch, read, transformed and padded, so DataLoader workers build whole batches.

    `utterance_transforms` run in order on each batch's utterances, then the batch is padded with `fill` (the
    model's CMVN mean, so that padding normalises to zero), then `batch_transforms` run on it. Transform t of
    batch k draws from a generator seeded with `batch_seeds[k] + t.seed_offset`.
    """

    def __init__(
        self,
        stores: Sequence[FeatureStore],
        examples: Sequence[Example],
        batches: list[list[int]],
        fill: np.ndarray,
        batch_seeds: Sequence[int],
        utterance_transforms: Sequence = (),
        batch_transforms: Sequence = (),
    ) -> None:
        self.stores = stores
        self.examples = examples
        self.batches = batches
        self.fill = torch.as_tensor(fill, dtype=torch.float32)
        self.batch_seeds = batch_seeds
        self.utterance_transforms = list(utterance_transforms)
        self.batch_transforms = list(batch_transforms)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, batch_number: int) -> dict:
        chosen = [self.examples[i] for i in self.batches[batch_number]]
        frames = [torch.from_numpy(self.stores[e.store].features(e.position)) for e in chosen]
        for transform in self.utterance_transforms:
            frames = transform(frames, chosen, self._generator(batch_number, transform))
        features, lengths = pad_batch(frames, self.fill)
        for transform in self.batch_transforms:
            features = transform(features, lengths, self._generator(batch_number, transform))
        labels = [torch.tensor(e.labels, dtype=torch.long) for e in chosen]
        return {
            "features": features,
            "lengths": lengths,
            "targets": torch.cat(labels),
            "target_lengths": torch.tensor([len(x) for x in labels]),
            "batch_number": batch_number,
        }

    def _generator(self, batch_number: int, transform) -> torch.Generator:
        return torch.Generator().manual_seed(self.batch_seeds[batch_number] + transform.seed_offset)


def apply_spec_augment(
    features: torch.Tensor,
    lengths: torch.Tensor,
    fill: torch.Tensor,
    config: SpecAugmentConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """Mask random bands of bins and spans of frames in a padded (B, T, F) batch, vectorised."""
    batch_size, max_frames, num_bins = features.shape
    keep = torch.ones(batch_size, max_frames, num_bins, dtype=torch.bool)
    if config.freq_masks and config.freq_width:
        widths = torch.randint(0, config.freq_width + 1, (batch_size, config.freq_masks), generator=generator)
        starts = (torch.rand(batch_size, config.freq_masks, generator=generator) * (num_bins - widths + 1)).long()
        bins = torch.arange(num_bins)[None, None, :]
        band = (bins >= starts[..., None]) & (bins < (starts + widths)[..., None])  # (B, masks, F)
        keep &= ~band.any(dim=1)[:, None, :]
    if config.time_masks and config.time_width:
        limits = torch.clamp((lengths.float() * config.max_time_fraction).long(), max=config.time_width)
        widths = (torch.rand(batch_size, config.time_masks, generator=generator) * (limits[:, None] + 1)).long()
        starts = (
            torch.rand(batch_size, config.time_masks, generator=generator) * (lengths[:, None] - widths + 1)
        ).long()
        frames = torch.arange(max_frames)[None, None, :]
        span = (frames >= starts[..., None]) & (frames < (starts + widths)[..., None])  # (B, masks, T)
        keep &= ~span.any(dim=1)[:, :, None]
    return torch.where(keep, features, fill)


def epoch_batch_seeds(seed: int, epoch: int, num_batches: int) -> list[int]:
    """One seed per batch of an epoch, independent of how far the epoch has run."""
    return np.random.default_rng([seed, epoch, 1]).integers(0, 2**62, size=num_batches).tolist()
