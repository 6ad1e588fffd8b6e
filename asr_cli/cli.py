"""The `asr-cli` command: a thin Typer layer that parses options, calls the library, and prints."""

from __future__ import annotations

import os
import signal
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import __version__
from .errors import AsrCliError

app = typer.Typer(
    name="asr-cli",
    help="Speech recognition from your own recordings: import -> prepare -> train -> decode -> score.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
import_app = typer.Typer(
    help="Turn a corpus layout (Kaldi, LibriSpeech, CSV/TSV) into a JSONL manifest.", no_args_is_help=True
)
app.add_typer(import_app, name="import")


class FeatureKind(str, Enum):
    fbank = "fbank"
    mfcc = "mfcc"


class StoreDtype(str, Enum):
    float16 = "float16"
    float32 = "float32"


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"asr-cli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Speech recognition from your own recordings: import -> prepare -> train -> decode -> score."""


OutputManifest = Annotated[Path, typer.Option("--output", "-o", help="Manifest to write (JSONL; written atomically).")]


def _write_imported(utterances, output: Path) -> None:
    from .manifest import write_manifest

    count = write_manifest(output, utterances)
    with_text = sum(1 for u in utterances if u.text is not None)
    typer.echo(f"wrote {output}: {count:,} utterances ({with_text:,} with text)")


@import_app.command("kaldi")
def import_kaldi_command(
    data_dir: Annotated[Path, typer.Argument(help="Kaldi data directory with wav.scp and optionally text, utt2spk, segments.")],
    output: OutputManifest,
) -> None:
    """Import a Kaldi data directory. wav.scp must list plain file paths (relative ones resolve against DATA_DIR)."""
    from .importers import import_kaldi

    _write_imported(import_kaldi(data_dir), output)


@import_app.command("librispeech")
def import_librispeech_command(
    root: Annotated[Path, typer.Argument(help="Root of a LibriSpeech-style tree: SPEAKER/CHAPTER/*.trans.txt beside .flac files.")],
    output: OutputManifest,
) -> None:
    """Import a LibriSpeech tree (speaker = the first part of each utterance id)."""
    from .importers import import_librispeech

    _write_imported(import_librispeech(root), output)


@import_app.command("csv")
def import_csv_command(
    table: Annotated[Path, typer.Argument(help="CSV or TSV file with a header row.")],
    output: OutputManifest,
    audio_column: Annotated[str, typer.Option(help="Column holding the audio path.")] = "path",
    text_column: Annotated[Optional[str], typer.Option(help="Column holding the transcript (none: no text).")] = "sentence",
    id_column: Annotated[Optional[str], typer.Option(help="Column holding the utterance id (default: audio file name without extension).")] = None,
    speaker_column: Annotated[Optional[str], typer.Option(help="Column holding the speaker id, e.g. client_id for Common Voice.")] = None,
    delimiter: Annotated[Optional[str], typer.Option(help="Field delimiter (default: tab for .tsv, comma otherwise).")] = None,
    audio_dir: Annotated[Optional[Path], typer.Option(help="Folder that relative audio paths are relative to (default: the table's folder; Common Voice: its clips/ folder).")] = None,
) -> None:
    """Import a CSV/TSV table; the defaults fit Common Voice TSVs (path, sentence)."""
    from .importers import import_csv

    delimiter = "\t" if delimiter in ("\\t", "tab") else delimiter
    _write_imported(
        import_csv(table, audio_column, text_column, id_column, speaker_column, delimiter, audio_dir), output
    )


@app.command()
def prepare(
    manifest: Annotated[Path, typer.Argument(help="Manifest (JSONL) of the utterances to featurise.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Feature store folder to create (built in a temporary sibling, renamed at the end).")],
    features: Annotated[FeatureKind, typer.Option(help="Log-mel filterbank or MFCC (13 cepstra, energy as C0).")] = FeatureKind.fbank,
    num_mel_bins: Annotated[Optional[int], typer.Option(help="Mel bins (default: 80 for fbank, 23 for MFCC).")] = None,
    num_ceps: Annotated[int, typer.Option(help="Cepstra kept for MFCC.")] = 13,
    sample_rate: Annotated[int, typer.Option(help="Sample rate in Hz that audio is resampled to before framing.")] = 16000,
    deltas: Annotated[bool, typer.Option(help="Append deltas and delta-deltas (3x the dimension).")] = False,
    dither: Annotated[float, typer.Option(help="Dither amplitude in 16-bit sample units (0: none, reproducible).")] = 0.0,
    dtype: Annotated[StoreDtype, typer.Option(help="Storage type of the frames; float16 halves the disk and memory.")] = StoreDtype.float16,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Worker processes.")] = 1,
    shard: Annotated[str, typer.Option(help="Process only shard K of N (every N-th utterance, starting at the K-th), e.g. 2/4.")] = "1/1",
    skip_bad: Annotated[bool, typer.Option(help="Leave out bad utterances (listed in the store) instead of stopping.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing store (only once the new one is complete).")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr.")] = True,
) -> None:
    """Compute Kaldi-style features for a manifest into a memory-mapped feature store, with CMVN statistics."""
    from .features import FeatureConfig
    from .prepare import PrepareOptions, parse_shard
    from .prepare import prepare as run_prepare

    shard_index, num_shards = parse_shard(shard)
    try:
        feature_config = FeatureConfig.for_kind(
            features.value, num_mel_bins=num_mel_bins, num_ceps=num_ceps, sample_rate_hz=sample_rate,
            deltas=deltas, dither=dither,
        )
    except ValueError as error:
        raise AsrCliError(str(error)) from error
    options = PrepareOptions(
        feature_config=feature_config, dtype=dtype.value, jobs=jobs, shard_index=shard_index,
        num_shards=num_shards, skip_bad=skip_bad, overwrite=overwrite, show_progress=progress,
    )
    summary = run_prepare(manifest, output, options)
    typer.echo(summary.describe())


class RefFormat(str, Enum):
    auto = "auto"
    manifest = "manifest"
    store = "store"
    kaldi = "kaldi"


class HypFormat(str, Enum):
    auto = "auto"
    jsonl = "jsonl"
    kaldi = "kaldi"


class MissingPolicy(str, Enum):
    error = "error"
    deletion = "deletion"


@app.command()
def score(
    references: Annotated[Path, typer.Argument(help="References: a manifest (JSONL), a feature store folder, or a Kaldi `text` file (speakers from a utt2spk beside it).")],
    hypotheses: Annotated[Path, typer.Argument(help="Hypotheses: `decode` output (JSONL with id and text) or a Kaldi-style `id text` file.")],
    json_output: Annotated[Optional[Path], typer.Option("--json", help="Also write the full report as JSON (with per-utterance counts) to this file.")] = None,
    per_speaker: Annotated[bool, typer.Option(help="Print the per-speaker table (when speakers are known).")] = True,
    show_worst: Annotated[int, typer.Option(help="Print this many worst utterances with aligned REF/HYP lines (0: none).")] = 10,
    top_substitutions: Annotated[int, typer.Option(help="Print this many most frequent substitution pairs (0: none).")] = 10,
    case_fold: Annotated[bool, typer.Option(help="Normalise case (Unicode case folding) on both sides.")] = True,
    remove_punctuation: Annotated[bool, typer.Option(help="Replace punctuation by spaces on both sides, keeping apostrophes inside words.")] = True,
    collapse_whitespace: Annotated[bool, typer.Option(help="Collapse runs of white space and trim both ends on both sides.")] = True,
    missing: Annotated[MissingPolicy, typer.Option(help="A reference without a hypothesis: an error, or scored as an empty hypothesis (all deletions).")] = MissingPolicy.error,
    ignore_extra: Annotated[bool, typer.Option(help="Leave out hypotheses that have no reference instead of stopping.")] = False,
    cer: Annotated[bool, typer.Option(help="Also compute the character error rate (spaces count as characters).")] = True,
    ref_format: Annotated[RefFormat, typer.Option(help="Format of REFERENCES (auto: a folder is a store, a file starting with '{' is JSONL, else Kaldi text).")] = RefFormat.auto,
    hyp_format: Annotated[HypFormat, typer.Option(help="Format of HYPOTHESES (auto: a file starting with '{' is JSONL, else Kaldi text).")] = HypFormat.auto,
    bootstrap_draws: Annotated[int, typer.Option(help="Bootstrap resamples of utterances for the 95% WER interval (0: none).")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap, so reports are reproducible.")] = 0,
) -> None:
    """Word and character error rates with S/D/I counts, a bootstrap interval, per-speaker table and alignments."""
    from .fileio import write_json
    from .score import ScoreOptions, read_hypotheses, read_references
    from .score import score as run_score
    from .text import NormalizeOptions

    options = ScoreOptions(
        normalize=NormalizeOptions(case_fold, remove_punctuation, collapse_whitespace),
        missing=missing.value, ignore_extra=ignore_extra, compute_cer=cer,
        bootstrap_draws=bootstrap_draws, seed=seed,
    )
    report = run_score(read_references(references, ref_format.value), read_hypotheses(hypotheses, hyp_format.value), options)
    typer.echo(report.format_text(show_worst=show_worst, per_speaker=per_speaker, top_substitutions=top_substitutions))
    if json_output is not None:
        write_json(json_output, report.to_dict(top_substitutions=top_substitutions))
        typer.echo(f"\nwrote {json_output}")


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run(args: list[str] | None = None) -> int:
    """Run the command line; returns the exit status. User errors become one clear message."""
    command = typer.main.get_command(app)
    try:
        command.main(args=args, prog_name="asr-cli", standalone_mode=False)
    except typer.Exit as exit_request:
        return exit_request.exit_code
    except typer.Abort:
        typer.echo("interrupted", err=True)
        return 130
    except typer.TyperException as error:  # usage errors: a bad option or a missing argument
        error.show()
        return error.exit_code
    except AsrCliError as error:
        typer.echo(f"error: {error}", err=True)
        return 1
    except KeyboardInterrupt:
        typer.echo("interrupted: partial outputs were removed; run the command again to redo the work", err=True)
        return 130
    except OSError as error:
        typer.echo(f"error: {error}", err=True)
        return 1
    return 0


def main() -> None:
    """Console entry point. Exits without interpreter teardown, which costs ~0.7 s once torch is loaded;
    every output is already closed (written atomically) by then."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
    status = run()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
