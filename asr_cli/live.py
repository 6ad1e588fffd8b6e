"""`asr-cli stream`: a model's Stream fed from a file, standard input or a microphone, each finished segment
printed as it ends (a line of text, or JSON with word times), the segment under way shown on stderr.

Nothing heard is lost: at the end of the input, at Ctrl-C (exit 130) and when the input turns out to be cut or
bad part-way, the audio already given is recognised to the end and its last segment printed before the message.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path

from .config import LiveConfig, StreamConfig
from .errors import AsrCliError
from .live_audio import ByteStream, file_blocks, microphone_blocks, paced
from .results import StreamSegment, StreamUpdate
from .signals import raise_if_stopped
from .threads import use_threads

STDIN_NAME = "-"


class Printer:
    """Finished segments to stdout (flushed at once: the reader may be a pipe); the partial text on stderr as one
    line rewritten in place, cleared before each segment is printed."""

    def __init__(self, segment_format: str, show_partial: bool) -> None:
        self.segment_format, self.show_partial = segment_format, show_partial
        self.partial_shown = False

    def update(self, update: StreamUpdate) -> None:
        for segment in update.finished:
            self.segment(segment)
        if self.show_partial and update.partial:
            width = shutil.get_terminal_size((80, 20)).columns - 1
            sys.stderr.write("\r\x1b[K" + update.partial[-width:])
            sys.stderr.flush()
            self.partial_shown = True

    def segment(self, segment: StreamSegment) -> None:
        self.clear_partial()
        line = segment.text if self.segment_format == "txt" else json.dumps(segment.to_record(), ensure_ascii=False)
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def clear_partial(self) -> None:
        if self.partial_shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self.partial_shown = False


def run_stream(
    model: Path,
    audio: str | None,
    live: LiveConfig,
    config: StreamConfig,
    search: dict,
    *,
    lm=None,
    lm_unit: str = "word",
    lexicon: Path | None = None,
    sample_rate: int | None = None,
    realtime: bool = False,
    show_partial: bool | None = None,
) -> None:
    """Stream `audio` (a path, "-" for standard input, None for the microphone) through `model` and print."""
    from .recognizer import STORED_IF_ANY, load_model

    use_threads(live.threads)
    recognizer = load_model(model, "cpu")
    lm_choice = STORED_IF_ANY if lm is None else None if lm == "none" else lm
    fields = {**search, **dataclasses.asdict(config)}
    stream = recognizer.stream(lm=lm_choice, lm_unit=lm_unit, lexicon=lexicon, **fields)
    block_s = live.read_ms / 1000
    byte_stream = None
    if audio is None:
        blocks = microphone_blocks(recognizer.sample_rate_hz, block_s)
    elif audio == STDIN_NAME:
        byte_stream = ByteStream(sys.stdin.buffer, "standard input", sample_rate or recognizer.sample_rate_hz,
                                 live.input_format)  # fmt: skip
        blocks = byte_stream.blocks(block_s)
    else:
        if sample_rate is not None:
            raise AsrCliError("--sample-rate is for raw PCM on standard input; a file's rate comes from its header")
        blocks = file_blocks(Path(audio), block_s)
    printer = Printer(live.segment_format, sys.stderr.isatty() if show_partial is None else show_partial)
    try:
        _recognise(stream, paced(blocks) if realtime else blocks, printer)
    except BrokenPipeError:
        # The reader of stdout is gone: nothing more can be said there (and flushing it again would fail too).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise AsrCliError("standard output was closed (its reader stopped), so recognition stopped") from None
    for warning in byte_stream.warnings if byte_stream is not None else []:
        printer.clear_partial()
        print(f"warning: {warning}", file=sys.stderr)


def _recognise(stream, blocks, printer: Printer) -> None:
    """Every block through the stream; whatever stops it (the end, Ctrl-C, an error in the input), what was heard
    is finished and printed first."""
    try:
        for samples, rate_hz in blocks:
            raise_if_stopped()
            printer.update(stream.accept(samples, rate_hz))
    except BaseException:
        try:
            printer.update(stream.finish())
        finally:
            printer.clear_partial()
        raise
    printer.update(stream.finish())
    printer.clear_partial()
