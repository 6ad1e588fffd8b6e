"""Scoring: WER and CER (jiwer), S/D/I counts, sentence error rate, a bootstrap
confidence interval, per-speaker tables, the worst utterances aligned, and the
most frequent substitutions.

References come from a manifest, a feature store or a Kaldi `text` file;
hypotheses from `decode`'s JSONL or a Kaldi-style `id text` file. Both sides
are normalised with the same options before scoring.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path

import jiwer
import numpy as np

from . import inputs
from .config import HYP_FORMATS, REF_FORMATS, ReportConfig, ScoreConfig
from .errors import AsrCliError, require_file, some_of
from .fileio import iter_json_lines
from .importers import read_kaldi_table
from .text import normalize_text

BOOTSTRAP_CHUNK_DRAWS = 50


@dataclass(frozen=True)
class Transcript:
    """One utterance's text, and its speaker where known."""

    id: str
    text: str
    speaker: str | None = None


def _check_unique(transcripts: list[Transcript], path: Path) -> None:
    counts = collections.Counter(t.id for t in transcripts)
    duplicates = [utterance_id for utterance_id, count in counts.items() if count > 1]
    if duplicates:
        raise AsrCliError(f"{path}: {len(duplicates)} duplicate id(s): {some_of(list(duplicates))}")


REFERENCE_KINDS = {inputs.STORE: "store", inputs.MANIFEST: "manifest", inputs.KALDI_TEXT: "kaldi", inputs.TEXT: "kaldi"}
HYPOTHESIS_KINDS = {inputs.MANIFEST: "jsonl", inputs.KALDI_TEXT: "kaldi", inputs.TEXT: "kaldi"}


def _detected(path: Path, given: str, kinds: dict[str, str], role: str) -> str:
    """The format `given`, or for "auto" the one inputs.input_kind finds; a kind the role cannot use is an error."""
    if given != "auto":
        return given
    kind = inputs.require_kind(path, tuple(kinds), role)
    return kinds[kind]


def read_references(path: str | Path, ref_format: str = ScoreConfig.ref_format) -> list[Transcript]:
    """References from a manifest (JSONL), a feature store folder, or a Kaldi `text` file.

    A Kaldi `text` file takes speakers from a `utt2spk` beside it, when there is one.
    """
    path = Path(path)
    if not path.exists():
        raise AsrCliError(f"references not found: {path}")
    detected = _detected(path, ref_format, REFERENCE_KINDS, "the references")
    if detected == "store":
        from .store import FeatureStore

        transcripts = [Transcript(e.id, e.text, e.speaker) for e in FeatureStore(path)]
        untranscribed = [t.id for t in transcripts if t.text is None]
    elif detected in ("manifest", "jsonl"):
        records = _read_jsonl(path)
        untranscribed = [r["id"] for r in records if not isinstance(r.get("text"), str)]
        transcripts = [Transcript(r["id"], r.get("text") or "", r.get("speaker")) for r in records]
    elif detected == "kaldi":
        speakers = _read_utt2spk(path.parent / "utt2spk")
        transcripts = [Transcript(key, text, speakers.get(key)) for _, key, text in read_kaldi_table(path)]
        untranscribed = []
    else:
        raise AsrCliError(f"unknown reference format {ref_format!r}; choose one of {', '.join(REF_FORMATS)}")
    if untranscribed:
        raise AsrCliError(f"{path}: {len(untranscribed)} reference(s) without text: {some_of(list(untranscribed))}")
    _check_unique(transcripts, path)
    return transcripts


def read_hypotheses(path: str | Path, hyp_format: str = ScoreConfig.hyp_format) -> list[Transcript]:
    """Hypotheses from `decode` output (JSONL with id and text) or a Kaldi-style `id text` file."""
    path = require_file(path, "hypotheses file")
    detected = _detected(path, hyp_format, HYPOTHESIS_KINDS, "the hypotheses")
    if detected == "jsonl":
        records = _read_jsonl(path)
        untexted = [r["id"] for r in records if not isinstance(r.get("text"), str)]
        if untexted:
            raise AsrCliError(
                f"{path}: {len(untexted)} hypothesis line(s) without a text field: {some_of(list(untexted))}"
            )
        transcripts = [Transcript(r["id"], r["text"]) for r in records]
    elif detected == "kaldi":
        transcripts = [Transcript(key, text) for _, key, text in read_kaldi_table(path)]
    else:
        raise AsrCliError(f"unknown hypothesis format {hyp_format!r}; choose one of {', '.join(HYP_FORMATS)}")
    _check_unique(transcripts, path)
    return transcripts


def _read_jsonl(path: Path) -> list[dict]:
    records = []
    for line_number, record, problem in iter_json_lines(path):
        if problem is not None:
            raise AsrCliError(f"{path}, line {line_number}: {problem}")
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            raise AsrCliError(f"{path}, line {line_number}: expected a JSON object with a string 'id'")
        records.append(record)
    return records


def _read_utt2spk(path: Path) -> dict[str, str]:
    return {key: speaker for _, key, speaker in read_kaldi_table(path)} if path.is_file() else {}


def pair_up(
    references: list[Transcript], hypotheses: list[Transcript], options: ScoreConfig
) -> list[tuple[Transcript, str]]:
    """(reference, hypothesis text) by id, in reference order; unmatched ids are errors unless allowed."""
    hypothesis_text = {h.id: h.text for h in hypotheses}
    missing = [r.id for r in references if r.id not in hypothesis_text]
    if missing and options.missing == "error":
        raise AsrCliError(
            f"{len(missing)} reference(s) have no hypothesis: {some_of(missing)} "
            "(pass --missing deletion to score them as empty)"
        )
    reference_ids = {r.id for r in references}
    extra = [h.id for h in hypotheses if h.id not in reference_ids]
    if extra and not options.ignore_extra:
        raise AsrCliError(
            f"{len(extra)} hypothesis/hypotheses have no reference: {some_of(extra)} (pass --ignore-extra to leave them out)"
        )
    if not references:
        raise AsrCliError("no references to score")
    return [(r, hypothesis_text.get(r.id, "")) for r in references]


def _edit_counts(alignments: list[list[jiwer.AlignmentChunk]]) -> np.ndarray:
    """Per-sentence [hits, substitutions, deletions, insertions] from jiwer's alignment chunks."""
    counts = np.zeros((len(alignments), 4), dtype=np.int64)
    column = {"equal": 0, "substitute": 1, "delete": 2}
    for row, chunks in enumerate(alignments):
        for chunk in chunks:
            if chunk.type == "insert":
                counts[row, 3] += chunk.hyp_end_idx - chunk.hyp_start_idx
            else:
                counts[row, column[chunk.type]] += chunk.ref_end_idx - chunk.ref_start_idx
    return counts


def _rate(numerator: float, denominator: float) -> float | None:
    """A ratio, or None when it is undefined (nothing in the reference)."""
    if denominator == 0:
        return 0.0 if numerator == 0 else None
    return numerator / denominator


def bootstrap_wer_interval(
    errors: np.ndarray, ref_words: np.ndarray, draws: int, seed: int
) -> tuple[float, float] | None:
    """95% interval of corpus WER, resampling utterances with replacement (seeded)."""
    if draws <= 0 or ref_words.sum() == 0:
        return None
    rng = np.random.default_rng(seed)
    num_utterances = len(errors)
    samples = []
    for start in range(0, draws, BOOTSTRAP_CHUNK_DRAWS):
        chosen = rng.integers(0, num_utterances, size=(min(BOOTSTRAP_CHUNK_DRAWS, draws - start), num_utterances))
        samples.append(errors[chosen].sum(axis=1) / np.maximum(ref_words[chosen].sum(axis=1), 1))
    low, high = np.percentile(np.concatenate(samples), [2.5, 97.5])
    return float(low), float(high)


@dataclass
class ScoreReport:
    """Everything `score` computed, once: per-utterance counts, jiwer's word alignments, the totals and the
    per-speaker table. `render_text` and `render_json` present it."""

    ids: list[str]
    speakers: list[str | None]
    words: jiwer.WordOutput  # normalised words of each side and their alignment, per utterance
    word_counts: np.ndarray  # (num_utterances, 4): hits, substitutions, deletions, insertions
    char_counts: np.ndarray | None
    wer_ci95: tuple[float, float] | None
    options: ScoreConfig
    overall: dict = field(default_factory=dict)  # group statistics of every utterance (see group_stats)
    per_speaker: dict[str, dict] = field(default_factory=dict)  # ... of each speaker's; unknown speakers left out
    missing_scored_as_deletion: int = 0

    def substitution_pairs(self, limit: int) -> list[tuple[tuple[str, str], int]]:
        """The most frequent (reference word, hypothesis word) substitutions."""
        if limit <= 0:
            return []
        pairs: collections.Counter = collections.Counter()
        for row in np.flatnonzero(self.word_counts[:, 1] > 0):
            ref_words, hyp_words = self.words.references[row], self.words.hypotheses[row]
            for chunk in self.words.alignments[row]:
                if chunk.type == "substitute":
                    pairs.update(
                        zip(
                            ref_words[chunk.ref_start_idx : chunk.ref_end_idx],
                            hyp_words[chunk.hyp_start_idx : chunk.hyp_end_idx],
                        )
                    )
        return pairs.most_common(limit)

    def worst(self, count: int) -> list[int]:
        """Rows of the `count` utterances with the most word errors (ties: higher WER first)."""
        errors = self.word_counts[:, 1:].sum(axis=1)
        ref_words = np.maximum(self.word_counts[:, :3].sum(axis=1), 1)
        order = np.lexsort((-errors / ref_words, -errors))
        return [int(row) for row in order[:count] if errors[row] > 0]


def totals(counts: np.ndarray) -> dict:
    """Summed [hits, substitutions, deletions, insertions] of (N, 4) counts, with the error rate."""
    hits, substitutions, deletions, insertions = (int(x) for x in counts.sum(axis=0))
    reference = hits + substitutions + deletions
    return {
        "reference": reference,
        "hits": hits,
        "substitutions": substitutions,
        "deletions": deletions,
        "insertions": insertions,
        "errors": substitutions + deletions + insertions,
        "error_rate": _rate(substitutions + deletions + insertions, reference),
    }


def group_stats(word_counts: np.ndarray, char_counts: np.ndarray | None) -> dict:
    """sclite-style summary of a group of utterances, from their [H, S, D, I] word (and character) counts."""
    words = totals(word_counts)
    return {
        "num_utterances": int(word_counts.shape[0]),
        "ref_words": words["reference"],
        "wer": words["error_rate"],
        "substitutions": words["substitutions"],
        "deletions": words["deletions"],
        "insertions": words["insertions"],
        "hits": words["hits"],
        "ser": float(np.mean(word_counts[:, 1:].sum(axis=1) > 0)) if len(word_counts) else 0.0,
        "cer": totals(char_counts)["error_rate"] if char_counts is not None else None,
    }


def speaker_stats(speakers: list[str | None], word_counts: np.ndarray, char_counts: np.ndarray | None) -> dict:
    """group_stats per speaker (sorted by name); utterances without a speaker are left out."""
    known = np.array([s is not None for s in speakers], dtype=bool)
    if not known.any():
        return {}
    names, group = np.unique(
        np.array([s for s in speakers if s is not None], dtype=object).astype(str), return_inverse=True
    )
    rows = np.flatnonzero(known)
    order = np.argsort(group, kind="stable")
    boundaries = np.searchsorted(group[order], np.arange(len(names) + 1))
    table = {}
    for index, name in enumerate(names):
        members = rows[order[boundaries[index] : boundaries[index + 1]]]
        table[str(name)] = group_stats(word_counts[members], char_counts[members] if char_counts is not None else None)
    return table


def render_json(report: ScoreReport, view: ReportConfig = ReportConfig()) -> dict:
    """The machine-readable report; `utterances` holds per-utterance counts."""
    overall = report.overall
    utterances = [
        {
            "id": utterance_id,
            "speaker": speaker,
            "ref_words": int(h + s + d),
            "substitutions": int(s),
            "deletions": int(d),
            "insertions": int(i),
            "errors": int(s + d + i),
        }
        for utterance_id, speaker, (h, s, d, i) in zip(report.ids, report.speakers, report.word_counts.tolist())
    ]
    if report.char_counts is not None:
        for entry, (h, s, d, i) in zip(utterances, report.char_counts.tolist()):
            entry["ref_chars"] = h + s + d
            entry["char_errors"] = s + d + i
    return {
        **{
            key: overall[key]
            for key in (
                "wer",
                "cer",
                "substitutions",
                "deletions",
                "insertions",
                "hits",
                "ref_words",
                "num_utterances",
                "ser",
            )
        },
        "wer_ci95": list(report.wer_ci95) if report.wer_ci95 else None,
        "chars": totals(report.char_counts) if report.char_counts is not None else None,
        "per_speaker": report.per_speaker,
        "top_substitutions": [
            {"ref": ref, "hyp": hyp, "count": count}
            for (ref, hyp), count in report.substitution_pairs(view.top_substitutions)
        ],
        "missing_scored_as_deletion": report.missing_scored_as_deletion,
        "normalization": report.options.normalize.describe(),
        "utterances": utterances,
    }


def render_text(report: ScoreReport, view: ReportConfig = ReportConfig()) -> str:
    """The report for people: totals, per-speaker table, worst utterances aligned, substitutions."""
    lines = _summary_lines(report)
    speakers = report.per_speaker if view.per_speaker else {}
    if speakers:
        lines += ["", "Per speaker"] + _speaker_table(speakers, report.overall if len(speakers) > 1 else None)
    worst = report.worst(view.show_worst)
    if worst:
        lines += ["", f"Worst {len(worst)} utterance(s) (errors in UPPER CASE; S/D/I marks below)"]
        for row in worst:
            lines += [""] + _alignment_lines(report, row)
    substitutions = report.substitution_pairs(view.top_substitutions)
    if substitutions:
        lines += ["", "Most frequent substitutions", f"{'count':>7}  reference -> hypothesis"]
        lines += [f"{count:>7}  {ref} -> {hyp}" for (ref, hyp), count in substitutions]
    return "\n".join(lines)


def _summary_lines(report: ScoreReport) -> list[str]:
    words = totals(report.word_counts)
    lines = [
        f"utterances: {len(report.ids):,}   reference words: {words['reference']:,}   "
        f"normalisation: {report.options.normalize.describe()}"
    ]
    if report.missing_scored_as_deletion:
        lines.append(f"missing hypotheses scored as empty: {report.missing_scored_as_deletion:,}")
    interval = f"   95% CI [{_percent(report.wer_ci95[0])}, {_percent(report.wer_ci95[1])}]" if report.wer_ci95 else ""
    lines.append(f"WER {_percent(words['error_rate']):>8}{interval}")
    lines.append("    " + _sdi_line(words))
    if report.char_counts is not None:
        chars = totals(report.char_counts)
        lines.append(f"CER {_percent(chars['error_rate']):>8}   over {chars['reference']:,} reference characters")
        lines.append("    " + _sdi_line(chars))
    with_errors = int((report.word_counts[:, 1:].sum(axis=1) > 0).sum())
    lines.append(
        f"SER {_percent(report.overall['ser']):>8}   ({with_errors:,} of {len(report.ids):,} utterances with an error)"
    )
    return lines


def _alignment_lines(report: ScoreReport, row: int) -> list[str]:
    hits, substitutions, deletions, insertions = (int(x) for x in report.word_counts[row])
    speaker = f" (speaker {report.speakers[row]})" if report.speakers[row] is not None else ""
    header = (
        f"{report.ids[row]}{speaker}: {substitutions + deletions + insertions} error(s) in "
        f"{hits + substitutions + deletions} word(s)"
    )
    ref_words, hyp_words = report.words.references[row], report.words.hypotheses[row]
    ref_cells, hyp_cells, marks = [], [], []
    for chunk in report.words.alignments[row]:
        ref_part = ref_words[chunk.ref_start_idx : chunk.ref_end_idx]
        hyp_part = hyp_words[chunk.hyp_start_idx : chunk.hyp_end_idx]
        mark = {"equal": " ", "substitute": "S", "delete": "D", "insert": "I"}[chunk.type]
        for index in range(max(len(ref_part), len(hyp_part))):
            ref_word = ref_part[index] if index < len(ref_part) else None
            hyp_word = hyp_part[index] if index < len(hyp_part) else None
            width = max(len(ref_word or "*"), len(hyp_word or "*"))
            shown = (lambda word: word) if mark == " " else str.upper
            ref_cells.append(shown(ref_word).ljust(width) if ref_word else "*" * width)
            hyp_cells.append(shown(hyp_word).ljust(width) if hyp_word else "*" * width)
            marks.append(mark.ljust(width))
    return [
        header,
        "  REF: " + " ".join(ref_cells),
        "  HYP: " + " ".join(hyp_cells),
        "       " + " ".join(marks).rstrip(),
    ]


def _percent(rate: float | None) -> str:
    return "n/a" if rate is None else f"{100 * rate:.2f}%"


def _sdi_line(totals: dict) -> str:
    reference = totals["reference"]
    parts = [
        f"{name} {totals[key]:,} ({_percent(_rate(totals[key], reference))})"
        for name, key in (("sub", "substitutions"), ("del", "deletions"), ("ins", "insertions"))
    ]
    return "   ".join(parts)


def _speaker_table(speakers: dict[str, dict], total: dict | None) -> list[str]:
    header = f"{'speaker':<16} {'utts':>6} {'words':>7} {'corr%':>7} {'sub%':>6} {'del%':>6} {'ins%':>6} {'err%':>7} {'s.err%':>7}"
    rows = [header, "-" * len(header)]

    def row(name: str, stats: dict) -> str:
        words = stats["ref_words"]
        pct = lambda count: f"{100 * count / words:.1f}" if words else "n/a"  # noqa: E731
        correct = words - stats["substitutions"] - stats["deletions"]
        errors = stats["substitutions"] + stats["deletions"] + stats["insertions"]
        return (
            f"{name:<16} {stats['num_utterances']:>6,} {words:>7,} {pct(correct):>7} {pct(stats['substitutions']):>6} "
            f"{pct(stats['deletions']):>6} {pct(stats['insertions']):>6} {pct(errors):>7} {100 * stats['ser']:>7.1f}"
        )

    rows += [row(name, stats) for name, stats in speakers.items()]
    if total is not None:
        rows += ["-" * len(header), row("all", total)]
    return rows


def score(
    references: list[Transcript], hypotheses: list[Transcript], options: ScoreConfig = ScoreConfig()
) -> ScoreReport:
    """Normalise, match by id, and compute word (and character) error statistics."""
    pairs = pair_up(references, hypotheses, options)
    reference_texts = [normalize_text(r.text, options.normalize) for r, _ in pairs]
    hypothesis_texts = [normalize_text(h, options.normalize) for _, h in pairs]
    words = jiwer.process_words(reference_texts, hypothesis_texts)
    word_counts = _edit_counts(words.alignments)
    char_counts = None
    if options.compute_cer:
        char_counts = _edit_counts(jiwer.process_characters(reference_texts, hypothesis_texts).alignments)
    interval = bootstrap_wer_interval(
        word_counts[:, 1:].sum(axis=1), word_counts[:, :3].sum(axis=1), options.bootstrap_draws, options.seed
    )
    hypothesis_ids = {h.id for h in hypotheses}
    speakers = [r.speaker for r, _ in pairs]
    return ScoreReport(
        ids=[r.id for r, _ in pairs],
        speakers=speakers,
        words=words,
        word_counts=word_counts,
        char_counts=char_counts,
        wer_ci95=interval,
        options=options,
        overall=group_stats(word_counts, char_counts),
        per_speaker=speaker_stats(speakers, word_counts, char_counts),
        missing_scored_as_deletion=sum(1 for r, _ in pairs if r.id not in hypothesis_ids),
    )
