import json
from pathlib import Path

import pytest

from asr_cli.errors import AsrCliError
from asr_cli.manifest import Utterance, check_manifest, load_manifest, read_manifest, write_manifest


def test_round_trip_keeps_every_field(tmp_path: Path):
    utterance = Utterance("u1", "/a/b.wav", text="HELLO", speaker="s1", duration=1.5, offset=0.25)
    assert Utterance.from_dict(utterance.to_dict()) == utterance
    write_manifest(tmp_path / "m.jsonl", [utterance])
    assert load_manifest(tmp_path / "m.jsonl") == [utterance]


def test_relative_audio_resolves_against_manifest_folder(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "m.jsonl").write_text('{"id": "a", "audio": "wav/a.wav"}\n')
    [utterance] = load_manifest(tmp_path / "sub" / "m.jsonl")
    assert utterance.audio == str((tmp_path / "sub" / "wav" / "a.wav").resolve())


def test_every_bad_line_is_reported_with_its_number(tmp_path: Path):
    path = tmp_path / "m.jsonl"
    path.write_bytes(
        b'{"id": "a", "audio": "a.wav"}\n'
        b'{"id": "b", "audio": \n'  # malformed JSON
        b'{"id": "c"}\n'  # missing audio
        b'{"id": "a", "audio": "x.wav"}\n'  # duplicate id
        b'{"id": "d", "audio": "d.wav", "text": "caf\xe9"}\n'  # Latin-1, not UTF-8
        b"\n"
        b'{"id": "e", "audio": "e.wav", "duration": -1}\n'
    )
    utterances, problems = check_manifest(path)
    assert [u.id for u in utterances] == ["a"]
    described = [str(p) for p in problems]
    assert described[0].startswith("line 2: malformed JSON")
    assert described[1] == "line 3: missing required field(s): audio"
    assert described[2].startswith("line 4: duplicate id 'a' (first on line 1)")
    assert described[3].startswith("line 5: not valid UTF-8")
    assert described[4].startswith("line 7: field 'duration'")
    with pytest.raises(AsrCliError, match="5 bad line"):
        load_manifest(path)


def test_read_manifest_is_lazy_and_stops_at_first_bad_line(tmp_path: Path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"id": "a", "audio": "a.wav"}) + "\nnot json\n")
    lines = read_manifest(path)
    assert next(lines).id == "a"
    with pytest.raises(AsrCliError, match="line 2"):
        next(lines)


def test_missing_manifest_is_a_clear_error(tmp_path: Path):
    with pytest.raises(AsrCliError, match="manifest file not found"):
        load_manifest(tmp_path / "nope.jsonl")


def test_split_by_speaker_keeps_speakers_whole():
    from asr_cli.manifest import split_by_speaker

    utterances = [Utterance(f"{s}-{i}", "a.wav", speaker=f"s{s}") for s in range(10) for i in range(3)]
    kept, held_out = split_by_speaker(utterances, 3, seed=1)
    assert len(held_out) == 9 and len(kept) == 21
    assert not {u.speaker for u in kept} & {u.speaker for u in held_out}
    assert split_by_speaker(utterances, 3, seed=1) == (kept, held_out)
    with pytest.raises(AsrCliError, match="cannot hold out 10 of 10"):
        split_by_speaker(utterances, 10)
    with pytest.raises(AsrCliError, match="no speaker"):
        split_by_speaker([Utterance("x", "a.wav")], 1)
