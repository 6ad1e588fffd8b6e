"""The prepare step: manifest -> feature store, in parallel workers, atomically.

Every utterance is checked before any features are computed (manifest lines,
duplicate ids, audio headers, lengths); audio that fails only when decoded is
caught by the workers. Without `skip_bad`, any bad item stops the run and the
store is not written.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import heapq
import json
import multiprocessing
import os
import queue
import signal
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import AudioError, load_audio, resample, usable_duration_s
from .cmvn import CmvnStats
from .config import ConfigError, FeatureConfig, PrepareConfig
from .errors import AsrCliError, describe_os_error, format_problems
from .features import feature_extractor
from .fileio import atomic_directory, check_distinct_paths, check_replaceable_directory, json_line, write_json
from .logs import progress_bar
from .manifest import BadItem, Utterance, check_manifest
from .signals import forget_inherited_stops, raise_if_stopped
from .store import CMVN_FILE, INDEX_FILE, METADATA_FILE, SPEAKER_CMVN_FILE, ArrayWriter, IndexEntry, StoreMetadata
from .threads import use_threads

PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h): a signal for this process when its parent dies

# Small batches keep the (frames, 512) FFT buffer in cache: measured here, 20 s of audio per
# batch runs about 1.3x faster than 64 utterances at a time.
AUDIO_S_PER_BATCH = 20.0
WORKER_POLL_S = 1.0


@dataclass
class PrepareSummary:
    """What a prepare run wrote and skipped."""

    store: Path
    num_utterances: int
    num_frames: int
    duration_s: float
    skipped: list[BadItem]
    elapsed_s: float

    def describe(self) -> str:
        speed = self.duration_s / self.elapsed_s if self.elapsed_s > 0 else float("inf")
        lines = [
            f"wrote {self.store}: {self.num_utterances:,} utterances, {self.duration_s / 3600:.2f} h, "
            f"{self.num_frames:,} frames in {self.elapsed_s:.1f} s ({speed:,.0f}x real time)",
            f"skipped: {len(self.skipped)}",
        ]
        if self.skipped:
            lines.append(format_problems("skipped items:", [str(item) for item in self.skipped]))
        return "\n".join(lines)


def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' -> (K, N)."""
    try:
        k_text, n_text = text.split("/")
        return int(k_text), int(n_text)
    except ValueError as error:
        raise ConfigError("shard_index", f"{{0}} takes K/N, e.g. 1/4; got {text!r}") from error


def prepare(manifest_path: str | Path, store_path: str | Path, options: PrepareConfig) -> PrepareSummary:
    """Compute features for every utterance of a manifest (or one shard of it) into a new store."""
    started = time.perf_counter()
    store_path = Path(store_path)
    check_distinct_paths([manifest_path], [store_path])
    check_replaceable_directory(store_path, options.overwrite, METADATA_FILE, "a feature store")
    utterances, bad_items = check_manifest(manifest_path)
    utterances = utterances[options.shard_index - 1 :: options.num_shards]
    bad_items += check_audio(utterances, options.feature_config)
    _stop_unless_skipping(bad_items, options, before_writing=True)
    bad_ids = {item.item for item in bad_items}
    numbered = [(position, u) for position, u in enumerate(utterances) if u.id not in bad_ids]
    if not numbered:
        raise AsrCliError(f"{manifest_path}: no usable utterances")
    with atomic_directory(store_path, options.overwrite, METADATA_FILE, "a feature store") as folder:
        shares = [numbered[worker :: options.jobs] for worker in range(min(options.jobs, len(numbered)))]
        results = _run_shares(shares, folder, options)
        decode_failures = [BadItem(item_id, reason) for result in results for item_id, reason in result["bad"]]
        _stop_unless_skipping(decode_failures, options, before_writing=False)
        bad_items += decode_failures
        metadata = _finish_store(folder, results, options, bad_items)
    return PrepareSummary(
        store_path,
        metadata.num_utterances,
        metadata.num_frames,
        metadata.duration_s,
        bad_items,
        time.perf_counter() - started,
    )


def parse_speed_factors(text: str) -> tuple[float, ...]:
    """'0.9,1.0,1.1' -> (0.9, 1.0, 1.1)."""
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError as error:
        raise ConfigError(
            "speed_factors", f"{{0}} takes comma-separated factors, e.g. 0.9,1.0,1.1; got {text!r}"
        ) from error


def speed_perturbed_id(name: str, factor: float) -> str:
    """Kaldi's naming: the original name at factor 1, else 'sp0.9-name'."""
    return name if factor == 1.0 else f"sp{factor:g}-{name}"


def change_speed(samples: np.ndarray, factor: float, sample_rate_hz: int) -> np.ndarray:
    """Play `samples` `factor` times as fast (shorter for factor > 1), shifting pitch too.

    Resampling from factor * rate to rate is what `sox speed` does: the same
    waveform, read out at a different clock.
    """
    return samples if factor == 1.0 else resample(samples, factor * sample_rate_hz, sample_rate_hz)


def check_audio(utterances: Sequence[Utterance], config: FeatureConfig) -> list[BadItem]:
    """Problems visible from the audio headers: missing, unreadable, empty, or too short."""

    def problem(utterance: Utterance) -> BadItem | None:
        try:
            usable_s = usable_duration_s(utterance.audio, utterance.offset, utterance.duration)
        except AudioError as error:
            return BadItem(utterance.id, str(error))
        if usable_s <= 0:
            return BadItem(
                utterance.id,
                f"{utterance.audio}: zero-length audio"
                if utterance.offset == 0
                else f"{utterance.audio}: offset {utterance.offset} s is past the end",
            )
        if config.num_frames(int(usable_s * config.sample_rate_hz)) == 0:
            return BadItem(
                utterance.id,
                f"{utterance.audio}: {usable_s * 1000:.1f} ms is shorter than one {config.frame_length_ms:g} ms frame",
            )
        return None

    # Serial on purpose: header reads are short calls that threads only slow down (GIL contention).
    return [item for item in map(problem, utterances) if item is not None]


def _stop_unless_skipping(bad_items: list[BadItem], options: PrepareConfig, before_writing: bool) -> None:
    if bad_items and not options.skip_bad:
        when = "nothing was written" if before_writing else "the store was not written"
        raise AsrCliError(
            format_problems(
                f"{len(bad_items)} bad item(s); {when}. Fix them, or pass --skip-bad to leave them out:",
                [str(item) for item in bad_items],
            )
        )


def _run_shares(shares: list[list[tuple[int, Utterance]]], folder: Path, options: PrepareConfig) -> list[dict]:
    """Process each share into its own array, in worker processes when there are several."""
    total = sum(len(share) for share in shares)
    with progress_bar(total, "prepare", options.show_progress, unit="utt") as bar:
        if len(shares) == 1:
            use_threads(options.threads)
            return [_process_share(shares[0], 0, folder, options, bar.update)]
        return _run_worker_processes(shares, folder, options, bar.update)


def _run_worker_processes(
    shares: list[list[tuple[int, Utterance]]], folder: Path, options: PrepareConfig, report: Callable[[int], object]
) -> list[dict]:
    start_methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in start_methods else "spawn")
    messages = context.Queue()
    workers = [
        context.Process(target=_worker_main, args=(share, index, folder, options, messages, os.getpid()), daemon=True)
        for index, share in enumerate(shares)
    ]
    # Signals wait until each worker has set its own handlers; a Ctrl-C during the fork would raise in it.
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        for worker in workers:
            worker.start()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
    results: dict[int, dict] = {}
    try:
        while len(results) < len(workers):
            raise_if_stopped()
            try:
                kind, index, payload = messages.get(timeout=WORKER_POLL_S)
            except queue.Empty:
                _check_workers_alive(workers, results)
                continue
            if kind == "progress":
                report(payload)
            elif kind == "done":
                results[index] = payload
            else:
                raise AsrCliError(f"prepare worker {index} failed:\n{payload}")
    finally:
        for worker in workers:
            worker.join(timeout=WORKER_POLL_S if len(results) == len(workers) else 0)
            if worker.is_alive():
                worker.terminate()
                worker.join()
    return [results[index] for index in range(len(workers))]


def _check_workers_alive(workers: list, results: dict[int, dict]) -> None:
    for index, worker in enumerate(workers):
        if index not in results and worker.exitcode not in (None, 0):
            raise AsrCliError(
                f"prepare worker {index} died (exit code {worker.exitcode}); if it ran out of memory, use fewer --jobs"
            )


def _worker_main(share, index: int, folder: Path, options: PrepareConfig, messages, parent_pid: int) -> None:
    # Ctrl-C reaches the whole process group; the parent decides and terminates the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    forget_inherited_stops()  # a SIGTERM to the parent while it forked this worker is the parent's to handle
    _die_with_parent(parent_pid)
    use_threads(options.threads, options.jobs)
    try:
        result = _process_share(share, index, folder, options, lambda count: messages.put(("progress", index, count)))
        messages.put(("done", index, result))
    except (AsrCliError, OSError) as error:  # handed to the parent, which reports it and removes the partial store
        if isinstance(error, OSError) and error.filename is None:  # a flush on close names no file
            error = OSError(error.errno, error.strerror, str(folder))
        messages.put(("error", index, describe_os_error(error) if isinstance(error, OSError) else str(error)))
    except Exception as error:  # a bug: keep the traceback for the report
        import traceback

        messages.put(("error", index, f"{error}\n{traceback.format_exc()}"))


def _die_with_parent(parent_pid: int) -> None:
    """Have Linux kill this worker when prepare dies, even by kill -9, so no orphan keeps writing."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


def _process_share(
    share: list[tuple[int, Utterance]],
    array_index: int,
    folder: Path,
    options: PrepareConfig,
    report: Callable[[int], object],
) -> dict:
    """Decode, featurise and append one share's utterances to array `array_index`.

    Writes `index-NNN.part` lines ({position, entry}) in manifest order and returns
    the array's frame count, CMVN stats, total duration and undecodable items.
    """
    config = options.feature_config
    extractor = feature_extractor(config)
    writer = ArrayWriter(folder, array_index, config.dim, options.dtype)
    bad: list[tuple[str, str]] = []
    duration_s = 0.0
    speaker_cmvn: dict[str, CmvnStats] = {}
    with open(folder / f"index-{array_index:03d}.part", "w", encoding="utf-8") as index_handle:
        for batch, loaded, failures in _loaded_batches(share, config, options.speed_factors):
            bad += failures
            seeds = [zlib.crc32(utterance.id.encode("utf-8")) for _, utterance, _ in loaded]
            features = extractor([samples for _, _, samples in loaded], seeds=seeds)
            for (position, utterance, samples), utterance_features in zip(loaded, features):
                _require_finite(utterance_features, utterance, options.dtype)
                start, stored = writer.append(utterance_features)
                if utterance.speaker is not None:
                    speaker_cmvn.setdefault(utterance.speaker, CmvnStats.zeros(config.dim)).accumulate(stored)
                entry = IndexEntry(
                    utterance.id,
                    array_index,
                    start,
                    utterance_features.shape[0],
                    utterance.text,
                    utterance.speaker,
                    len(samples) / config.sample_rate_hz,
                )
                duration_s += entry.duration
                index_handle.write(json_line([position, entry.to_dict()]))
            report(len(batch))
    writer.close()
    return {
        "num_frames": writer.num_frames,
        "cmvn": writer.cmvn.to_dict(),
        "duration_s": duration_s,
        "bad": bad,
        "speaker_cmvn": {speaker: stats.to_dict() for speaker, stats in speaker_cmvn.items()},
    }


def _require_finite(features: np.ndarray, utterance: Utterance, dtype: str) -> None:
    """Features that are not finite, or would not be in the store's dtype, never enter a store."""
    if not np.isfinite(features).all():
        raise AsrCliError(f"{utterance.id}: its features are NaN or infinite ({utterance.audio})")
    if dtype == "float16" and np.abs(features).max(initial=0.0) > np.finfo(np.float16).max:
        raise AsrCliError(f"{utterance.id}: its features exceed float16's range; prepare with --dtype float32")


def _loaded_batches(share: list[tuple[int, Utterance]], config: FeatureConfig, speed_factors: tuple[float, ...]):
    """Yield (batch, [(position, utterance, samples)], [(id, problem)]) holding about AUDIO_S_PER_BATCH of audio.

    With several speed factors each utterance yields one entry per factor, at
    position `manifest position * len(speed_factors) + factor index`, so that the
    merged index keeps the perturbed copies next to their original.
    """
    batch, loaded, failures, batch_samples = [], [], [], 0
    for position, utterance in share:
        raise_if_stopped()
        batch.append((position, utterance))
        try:
            samples, _ = load_audio(utterance.audio, config.sample_rate_hz, utterance.offset, utterance.duration)
        except AudioError as error:
            failures.append((utterance.id, str(error)))
            samples = None
        for factor_index, factor in enumerate(speed_factors if samples is not None else ()):
            copy = _speed_perturbed_utterance(utterance, factor)
            changed = change_speed(samples, factor, config.sample_rate_hz)
            if config.num_frames(len(changed)) == 0:
                failures.append((copy.id, f"{utterance.audio}: shorter than one {config.frame_length_ms:g} ms frame"))
                continue
            loaded.append((position * len(speed_factors) + factor_index, copy, changed))
            batch_samples += len(changed)
        if batch_samples >= AUDIO_S_PER_BATCH * config.sample_rate_hz:
            yield batch, loaded, failures
            batch, loaded, failures, batch_samples = [], [], [], 0
    if batch:
        yield batch, loaded, failures


def _speed_perturbed_utterance(utterance: Utterance, factor: float) -> Utterance:
    if factor == 1.0:
        return utterance
    speaker = None if utterance.speaker is None else speed_perturbed_id(utterance.speaker, factor)
    return dataclasses.replace(utterance, id=speed_perturbed_id(utterance.id, factor), speaker=speaker)


def _finish_store(folder: Path, results: list[dict], options: PrepareConfig, bad_items: list[BadItem]) -> StoreMetadata:
    """Merge the index parts in manifest order, then write CMVN stats and metadata."""
    part_paths = sorted(folder.glob("index-*.part"))
    num_utterances = 0
    with open(folder / INDEX_FILE, "w", encoding="utf-8") as index_handle:
        for _, entry in heapq.merge(*(_read_part(path) for path in part_paths), key=lambda item: item[0]):
            index_handle.write(json_line(entry))
            num_utterances += 1
    for path in part_paths:
        path.unlink()
    cmvn = CmvnStats.zeros(options.feature_config.dim)
    for result in results:
        cmvn = cmvn + CmvnStats.from_dict(result["cmvn"])
    write_json(folder / CMVN_FILE, cmvn.to_dict())
    speaker_cmvn: dict[str, CmvnStats] = {}
    for result in results:  # a speaker's utterances may be spread over several workers
        for speaker, record in result["speaker_cmvn"].items():
            stats = CmvnStats.from_dict(record)
            speaker_cmvn[speaker] = speaker_cmvn[speaker] + stats if speaker in speaker_cmvn else stats
    write_json(
        folder / SPEAKER_CMVN_FILE, {speaker: stats.to_dict() for speaker, stats in sorted(speaker_cmvn.items())}
    )
    metadata = StoreMetadata(
        feature_config=options.feature_config,
        dtype=options.dtype,
        array_frames=[result["num_frames"] for result in results],
        num_utterances=num_utterances,
        duration_s=sum(result["duration_s"] for result in results),
        skipped=[{"item": item.item, "reason": item.reason} for item in bad_items],
        speed_factors=list(options.speed_factors),
    )
    write_json(folder / METADATA_FILE, metadata.to_dict())
    return metadata


def _read_part(path: Path) -> Iterator[tuple[int, dict]]:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            position, entry = json.loads(line)
            yield position, entry
