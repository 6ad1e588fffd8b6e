"""The fault catalogue (issue #12): every case runs through the command line and checks the exit code, that
the message names the bad item, that no traceback is printed, and that no input or earlier output is lost."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asr_cli.cli import run
from asr_cli.errors import AsrCliError
from asr_cli.fileio import atomic_directory
from asr_cli.manifest import write_manifest
from tests.helpers import checksums, make_store, refused, start_cli


@pytest.fixture
def manifest(tmp_path: Path, fixture_utterances) -> Path:
    """The synthetic test corpus (16 utterances) as one manifest."""
    path = tmp_path / "corpus" / "all.jsonl"
    path.parent.mkdir()
    write_manifest(path, fixture_utterances[0] + fixture_utterances[1])
    return path


# --- Data loss ---------------------------------------------------------------------------------------------------


def test_overwrite_never_deletes_a_folder_that_is_not_a_store(tmp_path: Path, manifest: Path):
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("months of work")
    before = checksums(precious, manifest)
    refused("prepare", manifest, "-o", precious, "--overwrite", "--no-progress", names=str(precious))
    # The folder that holds the manifest itself.
    refused("prepare", manifest, "-o", manifest.parent, "--overwrite", "--no-progress", names=str(manifest.parent))
    assert checksums(precious, manifest) == before


def test_overwrite_replaces_a_store(tmp_path: Path, manifest: Path):
    store = tmp_path / "train.store"
    assert run(["prepare", str(manifest), "-o", str(store), "--no-progress"]) == 0
    assert run(["prepare", str(manifest), "-o", str(store), "--overwrite", "--no-progress", "--dtype", "float32"]) == 0
    assert '"float32"' in (store / "store.json").read_text()


def test_an_output_that_is_an_input_is_refused_before_any_work(tmp_path: Path, manifest: Path):
    before = checksums(manifest)
    refused(
        "split",
        manifest,
        "--train-output",
        manifest,
        "--dev-output",
        tmp_path / "dev.jsonl",
        "--dev-speakers",
        1,
        names=str(manifest),
    )
    refused(
        "split",
        manifest,
        "--train-output",
        tmp_path / "same.jsonl",
        "--dev-output",
        tmp_path / "same.jsonl",
        "--dev-speakers",
        1,
        names="same.jsonl",
    )
    refused("lm", manifest, "-o", manifest, names=str(manifest))
    link = tmp_path / "link.jsonl"
    link.symlink_to(manifest)
    refused("lm", manifest, "-o", link, names=str(manifest))  # the same file through a symbolic link
    hypotheses = tmp_path / "hyp.txt"
    hypotheses.write_text("x HELLO\n")
    refused("score", manifest, hypotheses, "--json", hypotheses, names=str(hypotheses))
    assert checksums(manifest) == before and hypotheses.read_text() == "x HELLO\n"
    assert not (tmp_path / "dev.jsonl").exists() and not (tmp_path / "same.jsonl").exists()


def test_decode_output_that_is_its_input(tmp_path: Path, fixture_model: Path, manifest: Path):
    before = checksums(manifest, fixture_model)
    refused("decode", fixture_model, manifest, "-o", manifest, "--no-progress", names=str(manifest))
    refused("decode", fixture_model, manifest, "-o", fixture_model, "--no-progress", names=str(fixture_model))
    assert checksums(manifest, fixture_model) == before


def test_a_symlinked_output_is_written_through(tmp_path: Path, manifest: Path):
    target = tmp_path / "models" / "words.arpa"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "current.arpa"
    link.symlink_to(target)
    assert run(["lm", str(manifest), "-o", str(link)]) == 0
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text().startswith("\\data\\")


def test_split_outputs_appear_together_or_not_at_all(tmp_path: Path, manifest: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    refused(
        "split",
        manifest,
        "--train-output",
        tmp_path / "train.jsonl",
        "--dev-output",
        blocker / "dev.jsonl",
        "--dev-speakers",
        1,
        names="a-file",
    )
    assert not (tmp_path / "train.jsonl").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_of_two_runs_into_one_new_folder_one_wins_and_the_other_says_so(tmp_path: Path):
    target = tmp_path / "store"
    with pytest.raises(AsrCliError, match="created by another run"):
        with atomic_directory(target, marker="store.json") as loser:
            (loser / "store.json").write_text("loser")
            with atomic_directory(target, marker="store.json") as winner:
                (winner / "store.json").write_text("winner")
    assert (target / "store.json").read_text() == "winner"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


def test_a_rerun_removes_temporaries_left_by_a_killed_run(tmp_path: Path, manifest: Path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".train.store.{dead.pid}.abcd.tmp"
    (stale / "feats-000.bin").parent.mkdir()
    (stale / "feats-000.bin").write_bytes(b"\0" * 1000)
    alive = tmp_path / f".train.store.{os.getpid()}.efgh.tmp"  # a run still working: not touched
    alive.mkdir()
    assert run(["prepare", str(manifest), "-o", str(tmp_path / "train.store"), "--no-progress"]) == 0
    assert not stale.exists() and alive.exists()


# --- Exit codes and interrupts ------------------------------------------------------------------------------------


def start_prepare(manifest: Path, store: Path, *options: str) -> subprocess.Popen:
    return start_cli("prepare", manifest, "-o", store, "--no-progress", *options)


def wait_for_temporary(folder: Path, name: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while not list(folder.glob(f".{name}.*.tmp")):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_prepare_exits_nonzero_and_keeps_the_old_store(
    tmp_path: Path, speechocean_utterances, signum, code
):
    manifest = tmp_path / "all.jsonl"
    write_manifest(manifest, speechocean_utterances)
    store = make_store(tmp_path / "old", speechocean_utterances[:5])
    before = checksums(store)
    process = start_prepare(manifest, store, "--overwrite", "--jobs", "2")
    wait_for_temporary(store.parent, store.name, process)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert "kept" in stderr and "Traceback" not in stderr
    assert checksums(store) == before
    assert not list(store.parent.glob(".*.tmp"))


@pytest.mark.slow
def test_kill_9_of_prepare_takes_its_workers_with_it(tmp_path: Path, speechocean_utterances):
    manifest = tmp_path / "all.jsonl"
    write_manifest(manifest, speechocean_utterances)
    process = start_prepare(manifest, tmp_path / "store", "--jobs", "2")
    wait_for_temporary(tmp_path, "store", process)
    children_file = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    if not children_file.exists():
        pytest.skip("needs /proc/PID/task/PID/children (Linux)")
    deadline = time.monotonic() + 30
    while len(children_file.read_text().split()) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    workers = [int(pid) for pid in children_file.read_text().split()]
    assert workers
    process.kill()
    process.wait()
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() and "Z" not in _state(pid) for pid in workers):
        assert time.monotonic() < deadline, f"workers {workers} outlived their parent"
        time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return "Z"


# --- Tracebacks become one line --------------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path, fixture_utterances) -> Path:
    return make_store(tmp_path / "damaged", fixture_utterances[0][:6])


def test_a_truncated_feature_array(tmp_path: Path, store: Path, fixture_model: Path):
    array = store / "feats-000.bin"
    array.write_bytes(array.read_bytes()[:-1000])
    refused("decode", fixture_model, store, "-o", tmp_path / "hyp.jsonl", "--no-progress", names=str(array))
    assert not (tmp_path / "hyp.jsonl").exists()


def test_a_damaged_index_line(tmp_path: Path, store: Path, fixture_model: Path):
    index = store / "index.jsonl"
    lines = index.read_text().splitlines()
    index.write_text("\n".join(lines[:2] + ['{"id": "x", "array": 0'] + lines[3:]) + "\n")
    refused("decode", fixture_model, store, "-o", tmp_path / "hyp.jsonl", "--no-progress", names=f"{index}, line 3")


@pytest.mark.parametrize(
    "damage, names",
    [
        (lambda c: c["state_dict"].update({"output.weight": c["state_dict"]["output.weight"][:3]}), "inconsistent"),
        (lambda c: c["model_config"].update({"colour": "blue"}), "colour"),
        (lambda c: c.pop("feature_config"), "no feature configuration"),
        (lambda c: c.update({"vocabulary": c["vocabulary"][:3]}), "vocabulary"),
    ],
)
def test_a_model_file_with_inconsistent_contents(tmp_path: Path, fixture_model: Path, store: Path, damage, names):
    import torch

    contents = torch.load(fixture_model, weights_only=True)
    damage(contents)
    damaged = tmp_path / "model.pt"
    torch.save(contents, damaged)
    message = refused("decode", damaged, store, "-o", tmp_path / "hyp.jsonl", "--no-progress", names=names)
    assert str(damaged) in message and "weights_only" not in message


def test_a_bare_tensor_as_model_or_checkpoint(tmp_path: Path, fixture_stores, store: Path):
    import torch

    torch.save(torch.zeros(3), tmp_path / "model.pt")
    refused(
        "decode",
        tmp_path / "model.pt",
        store,
        "-o",
        tmp_path / "hyp.jsonl",
        "--no-progress",
        names="not an asr-cli model file",
    )
    exp = tmp_path / "exp"
    exp.mkdir()
    torch.save(torch.zeros(3), exp / "checkpoint.last.pt")
    refused(
        "train",
        "--train",
        fixture_stores[0],
        "--valid",
        fixture_stores[1],
        "-o",
        exp,
        "--resume",
        "--no-progress",
        names="not an asr-cli training checkpoint",
    )


def test_an_arpa_file_with_only_its_header_and_end(tmp_path: Path, fixture_model: Path, store: Path):
    arpa = tmp_path / "empty.arpa"
    arpa.write_text("\\data\\\n\\end\\\n")
    refused(
        "decode",
        fixture_model,
        store,
        "-o",
        tmp_path / "hyp.jsonl",
        "--beam-size",
        "4",
        "--lm",
        arpa,
        "--no-progress",
        names=str(arpa),
    )


@pytest.mark.parametrize(
    "option, value",
    [("--lr", "nan"), ("--lr", "inf"), ("--num-workers", "-1"), ("--grad-clip", "-5"), ("--hold-fraction", "2")],
)
def test_out_of_range_training_options(tmp_path: Path, option, value):
    """Refused before any file is read: the stores named here do not exist."""
    message = refused(
        "train",
        "--train",
        tmp_path / "train.store",
        "--valid",
        tmp_path / "dev.store",
        "-o",
        tmp_path / "exp",
        option,
        value,
        "--no-progress",
        names=option,
    )
    assert "not a feature store" not in message and not (tmp_path / "exp").exists()


def test_a_vocabulary_that_is_not_utf8(tmp_path: Path, fixture_stores):
    vocabulary = tmp_path / "chars.txt"
    vocabulary.write_bytes(b"\xff\xfe\n")
    refused(
        "train",
        "--train",
        fixture_stores[0],
        "--valid",
        fixture_stores[1],
        "-o",
        tmp_path / "exp",
        "--vocabulary",
        vocabulary,
        "--no-progress",
        names=str(vocabulary),
    )


# --- Silent wrong results and misleading messages --------------------------------------------------------------------


def test_a_folder_where_a_file_is_expected_is_called_a_folder(tmp_path: Path, fixture_stores):
    refused("decode", tmp_path, fixture_stores[1], "-o", tmp_path / "hyp.jsonl", names="is a folder")
    refused(
        "split",
        tmp_path,
        "--train-output",
        tmp_path / "t.jsonl",
        "--dev-output",
        tmp_path / "d.jsonl",
        names="is a folder",
    )


def test_csv_byte_order_mark_duplicate_ids_short_rows_and_spaces_in_ids(tmp_path: Path):
    (tmp_path / "a.wav").write_bytes(b"")
    table = tmp_path / "t.csv"
    table.write_bytes("\ufeffpath,sentence\na.wav,HELLO\n".encode("utf-8"))
    assert run(["import", "csv", str(table), "-o", str(tmp_path / "ok.jsonl")]) == 0  # 'path' found despite the BOM
    table.write_text("path,sentence\na.wav,HELLO\nsub/a.wav,WORLD\n")
    refused("import", "csv", table, "-o", tmp_path / "m.jsonl", names="line 3")
    table.write_text("path,sentence\na.wav\n")
    refused("import", "csv", table, "-o", tmp_path / "m.jsonl", names="line 2")
    table.write_text("path,sentence,id\na.wav,HELLO,my utterance\n")
    refused("import", "csv", table, "-o", tmp_path / "m.jsonl", "--id-column", "id", names="white space")
    assert not (tmp_path / "m.jsonl").exists()


def test_kaldi_empty_wav_scp_and_bad_segments(tmp_path: Path):
    (tmp_path / "wav.scp").write_text("")
    refused("import", "kaldi", tmp_path, "-o", tmp_path / "m.jsonl", names="lists no recordings")
    (tmp_path / "a.wav").write_bytes(b"")
    (tmp_path / "wav.scp").write_text("rec a.wav\n")
    for start, end in (("-1", "2"), ("nan", "2"), ("0", "nan")):
        (tmp_path / "segments").write_text(f"seg rec {start} {end}\n")
        refused("import", "kaldi", tmp_path, "-o", tmp_path / "m.jsonl", names="segments, line 1")
    assert not (tmp_path / "m.jsonl").exists()


def test_nan_in_an_arpa_file(tmp_path: Path, fixture_model: Path, fixture_stores):
    arpa = tmp_path / "nan.arpa"
    arpa.write_text("\\data\\\nngram 1=2\n\n\\1-grams:\nnan\tA\n-1.0\tB\n\n\\end\\\n")
    refused(
        "decode",
        fixture_model,
        fixture_stores[1],
        "-o",
        tmp_path / "hyp.jsonl",
        "--beam-size",
        "4",
        "--lm",
        arpa,
        "--no-progress",
        names=f"{arpa}, line 5",
    )


def test_resume_keeps_the_records_true(tmp_path: Path, fixture_stores):
    args = [
        "train",
        "--train",
        str(fixture_stores[0]),
        "--valid",
        str(fixture_stores[1]),
        "-o",
        str(tmp_path / "exp"),
        "--layers",
        "1",
        "--hidden-size",
        "8",
        "--epochs",
        "2",
        "--num-workers",
        "0",
        "--no-progress",
    ]
    assert run(args) == 0
    config_before = (tmp_path / "exp" / "config.json").read_text()
    refused(*args, "--resume", names="already finished")
    assert (tmp_path / "exp" / "config.json").read_text() == config_before
    epochs = [line for line in (tmp_path / "exp" / "metrics.jsonl").read_text().splitlines()]
    assert len(epochs) == 2 and '"epoch": 2' in epochs[1]


@pytest.mark.parametrize(
    "option, value", [("--sample-rate", "0"), ("--num-mel-bins", "400"), ("--dither", "nan"), ("--dither", "-1")]
)
def test_out_of_range_feature_options(tmp_path: Path, manifest: Path, option, value):
    refused(
        "prepare",
        manifest,
        "-o",
        tmp_path / "store",
        option,
        value,
        "--no-progress",
        names=option.lstrip("-").replace("-", " ").split()[-1],
    )
    assert not (tmp_path / "store").exists()


def test_lm_order_out_of_range(tmp_path: Path, manifest: Path):
    refused("lm", manifest, "-o", tmp_path / "lm.arpa", "--order", "20", names="--order")
    assert not (tmp_path / "lm.arpa").exists()


def test_disk_errors_name_the_file(tmp_path: Path, monkeypatch):
    import errno

    from asr_cli.fileio import atomic_write

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    target = tmp_path / "out.txt"
    with pytest.raises(OSError, match="out.txt"):
        with atomic_write(target) as handle:
            handle.write("x")
            monkeypatch.setattr(os, "fsync", full_disk)
    assert not target.exists() and not list(tmp_path.iterdir())


def test_decode_refuses_undecodable_audio_or_skips_it_when_asked(tmp_path: Path, fixture_model: Path, capsys):
    import numpy as np
    import soundfile

    from tests.helpers import write_tone

    write_tone(tmp_path / "good.wav")
    soundfile.write(str(tmp_path / "nan.wav"), np.full(8000, np.nan, np.float32), 16000, subtype="FLOAT")
    flac = tmp_path / "truncated.flac"
    write_tone(flac, seconds=2.0)
    flac.write_bytes(flac.read_bytes()[: flac.stat().st_size // 2])
    for bad in ("nan.wav", "truncated.flac"):
        refused(
            "decode",
            fixture_model,
            tmp_path / "good.wav",
            tmp_path / bad,
            "-o",
            tmp_path / "hyp.jsonl",
            "--no-progress",
            names=bad,
        )
        assert not (tmp_path / "hyp.jsonl").exists()
    assert (
        run(
            [
                "decode",
                str(fixture_model),
                str(tmp_path / "good.wav"),
                str(tmp_path / "nan.wav"),
                str(flac),
                "-o",
                str(tmp_path / "hyp.jsonl"),
                "--skip-bad",
                "--no-progress",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert "nan.wav" in captured.err and "truncated.flac" in captured.err and "2 left out" in captured.out
    assert [line.split('"')[3] for line in (tmp_path / "hyp.jsonl").read_text().splitlines()] == ["good"]


def test_file_names_that_are_not_utf8(tmp_path: Path, fixture_model: Path):
    from tests.helpers import write_tone

    bad_name = os.fsdecode(b"\xffbad.wav")
    try:
        (tmp_path / bad_name).write_bytes(b"")
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system refuses non-UTF-8 names")
    write_tone(tmp_path / "good.wav")
    refused("decode", fixture_model, tmp_path / bad_name, "-o", tmp_path / "hyp.jsonl", names="not valid UTF-8")
    refused("prepare", tmp_path / bad_name, "-o", tmp_path / "store", names="not valid UTF-8")
    chapter = tmp_path / "libri" / "1" / os.fsdecode(b"\xff2")
    chapter.mkdir(parents=True)
    (chapter / "1-2.trans.txt").write_text("1-2-0001 HELLO\n")
    refused("import", "librispeech", tmp_path / "libri", "-o", tmp_path / "m.jsonl", names="not valid UTF-8")
    assert not (tmp_path / "hyp.jsonl").exists() and not (tmp_path / "m.jsonl").exists()


def test_truncated_audio_and_segments_past_the_end_are_not_stored_shorter(tmp_path: Path):
    from asr_cli.manifest import Utterance
    from tests.helpers import write_tone

    write_tone(tmp_path / "whole.wav", seconds=2.0)
    truncated = tmp_path / "truncated.wav"
    write_tone(truncated, seconds=2.0)
    truncated.write_bytes(truncated.read_bytes()[:40000])  # the header still says 2 s
    manifest = tmp_path / "m.jsonl"
    write_manifest(
        manifest,
        [
            Utterance("past-end", str(tmp_path / "whole.wav"), "A", duration=1.5, offset=1.0),
            Utterance("truncated", str(truncated), "B"),
        ],
    )
    message = refused("prepare", manifest, "-o", tmp_path / "store", "--no-progress", names="past-end")
    assert "runs past the end" in message and "truncated" in message and "header promises" in message
    assert not (tmp_path / "store").exists()


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["0", "1"])
def test_a_stopped_training_exits_nonzero_after_its_checkpoint(tmp_path: Path, fixture_stores, workers):
    exp = tmp_path / "exp"
    process = start_cli(
        "train",
        "--train",
        fixture_stores[0],
        "--valid",
        fixture_stores[1],
        "-o",
        exp,
        "--layers",
        "1",
        "--hidden-size",
        "16",
        "--epochs",
        "200",
        "--num-workers",
        workers,
        "--no-progress",
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not (exp / "metrics.jsonl").exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGTERM)  # the whole group, as a service manager or a shell's kill does
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    assert (exp / "checkpoint.last.pt").is_file()


# --- A full disk ---------------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path):
    """A folder on a tmpfs of the size asked for (root only; skipped elsewhere)."""
    mounted = []

    def mount(size_kb: int) -> Path:
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(folder)], capture_output=True, text=True
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here ({result.stderr.strip() or 'not root'})")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", str(folder)], check=False)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_prepare_on_a_full_disk(small_disk, manifest: Path, jobs):
    disk = small_disk(256)
    message = refused("prepare", manifest, "-o", disk / "store", "--jobs", jobs, "--no-progress", names=str(disk))
    assert "No space left" in message
    assert list(disk.iterdir()) == []  # no store, no temporary


def test_a_feature_array_filling_the_disk_says_so(small_disk):
    # numpy's own tofile reported a short write as "[Errno None] None"; the writer must keep the reason.
    import numpy as np

    from asr_cli.store import ArrayWriter

    disk = small_disk(64)
    writer = ArrayWriter(disk, 0, 80, "float32")
    with pytest.raises(OSError) as caught:
        for _ in range(10):
            writer.append(np.ones((100, 80), dtype=np.float32))  # 32 kB each
        writer.close()
    with contextlib.suppress(OSError):  # release the tmpfs for unmounting
        writer.close()
    assert "No space left" in str(caught.value.strerror) and "feats-000.bin" in str(caught.value.filename)


def test_training_checkpoint_on_a_full_disk(small_disk, fixture_stores):
    disk = small_disk(160)
    message = refused(
        "train",
        "--train",
        fixture_stores[0],
        "--valid",
        fixture_stores[1],
        "-o",
        disk / "exp",
        "--layers",
        "1",
        "--hidden-size",
        "32",
        "--epochs",
        "1",
        "--num-workers",
        "0",
        "--no-progress",
        names=str(disk / "exp"),
    )
    assert "--resume" in message and "Free some disk space" in message
    assert not [p for p in (disk / "exp").iterdir() if p.name.endswith(".tmp")]


def test_decode_options_must_be_finite_and_an_lm_must_have_words(
    tmp_path: Path, fixture_model: Path, fixture_stores, capsys
):
    for option in ("--lm-weight", "--word-bonus", "--beam-threshold"):  # before the (missing) model is read
        message = refused(
            "decode",
            tmp_path / "missing.pt",
            tmp_path / "missing.store",
            "-o",
            tmp_path / "hyp.jsonl",
            option,
            "nan",
            "--no-progress",
            names=option,
        )
        assert "not found" not in message
    arpa = tmp_path / "specials.arpa"
    arpa.write_text("\\data\\\nngram 1=2\n\n\\1-grams:\n-99\t<s>\n-1.0\t</s>\n\n\\end\\\n")
    message = refused(
        "decode",
        fixture_model,
        fixture_stores[1],
        "-o",
        tmp_path / "hyp.jsonl",
        "--beam-size",
        "4",
        "--lm",
        arpa,
        "--no-progress",
        names="has no words",
    )
    assert "KenLM" not in message and not (tmp_path / "hyp.jsonl").exists()


@pytest.mark.slow
def test_an_interrupted_decode_exits_130_and_writes_nothing(tmp_path: Path, fixture_model: Path, fixture_utterances):
    import dataclasses

    manifest = tmp_path / "all.jsonl"  # 8,000 utterances: far more than the seconds before the signal
    write_manifest(
        manifest,
        [
            dataclasses.replace(u, id=f"{u.id}-{copy}")
            for copy in range(500)
            for u in fixture_utterances[0] + fixture_utterances[1]
        ],
    )
    output = tmp_path / "hyp.jsonl"
    process = start_cli("decode", fixture_model, manifest, "-o", output, "--beam-size", "16", "--no-progress")
    time.sleep(4)
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "interrupted" in stderr and "Traceback" not in stderr, stderr
    assert list(tmp_path.iterdir()) == [manifest]


def test_validation_utterances_left_out_are_counted(tmp_path: Path, fixture_stores, fixture_utterances, capsys):
    import json

    from asr_cli.manifest import Utterance

    texts = ["ÉTÉ", "HELLO", "HELLO", "HELLO"]  # É: a character training never saw
    valid = [Utterance(u.id, u.audio, text, u.speaker) for u, text in zip(fixture_utterances[1], texts)]
    valid_store = make_store(tmp_path / "valid", valid)
    assert (
        run(
            [
                "train",
                "--train",
                str(fixture_stores[0]),
                "--valid",
                str(valid_store),
                "-o",
                str(tmp_path / "exp"),
                "--layers",
                "1",
                "--hidden-size",
                "8",
                "--epochs",
                "1",
                "--num-workers",
                "0",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "3 validation utterances (skipped: 1 unknown characters)" in capsys.readouterr().err
    config = json.loads((tmp_path / "exp" / "config.json").read_text())
    assert config["skipped_validation_utterances"]["unknown characters"] == [valid[0].id]


def test_training_never_writes_into_a_folder_of_other_files(tmp_path: Path, fixture_stores):
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.json").write_text('{"mine": true}')
    (project / "notes.txt").write_text("keep")
    before = checksums(project)
    refused(
        "train",
        "--train",
        fixture_stores[0],
        "--valid",
        fixture_stores[1],
        "-o",
        project,
        "--no-progress",
        names="notes.txt",
    )
    assert checksums(project) == before


def test_an_interrupt_wrapped_by_numba_is_still_an_interrupt(monkeypatch, capsys):
    # numba turns a Ctrl-C that lands while it unpickles compiled code into a chain of SystemErrors.
    import asr_cli.cli as cli

    def interrupted_inside_numba(_arguments):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as interrupt:
            raise SystemError("<function _numba_unpickle> returned a result with an exception set") from interrupt

    monkeypatch.setattr(cli, "_refuse_undecodable_arguments", interrupted_inside_numba)
    assert run(["info", "model.pt"]) == 130
    assert "interrupted" in capsys.readouterr().err

    def broken(_arguments):
        raise SystemError("a real internal error")

    monkeypatch.setattr(cli, "_refuse_undecodable_arguments", broken)
    with pytest.raises(SystemError):  # anything else stays a bug with its traceback
        run(["info", "model.pt"])


def test_a_worker_forked_while_prepare_was_being_stopped_does_not_stop_itself(tmp_path: Path, monkeypatch):
    """The stop record is inherited by fork: a SIGTERM that reached prepare while it forked its second worker
    made that worker raise Terminated at its first check and print a traceback (flaky under load in CI)."""
    import queue
    import signal as signal_module

    from asr_cli import prepare, signals
    from asr_cli.config import PrepareConfig

    monkeypatch.setattr(signals, "_received", [signal_module.SIGTERM])  # what the fork handed down
    for name in ("signal", "pthread_sigmask"):
        monkeypatch.setattr(prepare.signal, name, lambda *args: None)
    monkeypatch.setattr(prepare, "_die_with_parent", lambda pid: None)
    monkeypatch.setattr(prepare, "use_threads", lambda *args: None)

    def share_that_checks_for_stops(*args):
        signals.raise_if_stopped()
        return {"utterances": 0}

    monkeypatch.setattr(prepare, "_process_share", share_that_checks_for_stops)
    messages = queue.Queue()
    prepare._worker_main([], 0, tmp_path, PrepareConfig(), messages, os.getppid())
    assert messages.get_nowait() == ("done", 0, {"utterances": 0})


def test_a_stop_inside_deferred_stops_is_raised_when_the_block_ends():
    """Ctrl-C held back while native code hands typed dictionaries to Python (a KeyboardInterrupt half-way through
    boxing one crashed decode with a segmentation fault): it is raised after the block, not inside it."""
    import os

    from asr_cli.signals import deferred_stops

    reached = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_stops():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            reached.append("inside, after the signal")
    assert reached == ["inside, after the signal"]
