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
