"""Scoring: numbers checked against hand-computed examples, and every input error path."""

import json
from pathlib import Path

import pytest

from asr_cli.config import NormalizeConfig, PrepareConfig, ReportConfig, ScoreConfig
from asr_cli.errors import AsrCliError
from asr_cli.manifest import Utterance, write_manifest
from asr_cli.prepare import prepare
from asr_cli.score import Transcript, read_hypotheses, read_references, render_json, render_text, score
from tests.helpers import run_cli, write_tone


def score_pairs(pairs, **options):
    references = [Transcript(f"u{i}", ref, speaker) for i, (ref, _, speaker) in enumerate(pairs)]
    hypotheses = [Transcript(f"u{i}", hyp) for i, (_, hyp, _) in enumerate(pairs)]
    return render_json(score(references, hypotheses, ScoreConfig(**options)))


def test_empty_reference_counts_insertions():
    result = score_pairs([("", "x y", None), ("one two", "one two", None)])
    assert (result["insertions"], result["ref_words"], result["wer"], result["ser"]) == (2, 2, 1.0, 0.5)
    assert score_pairs([("", "", None)])["wer"] == 0.0
    only_insertions = score_pairs([("", "x", None)])
    assert only_insertions["wer"] is None and only_insertions["insertions"] == 1  # undefined, not a number


def test_empty_hypothesis_is_all_deletions():
    result = score_pairs([("a b c", "", None)])
    assert (result["deletions"], result["wer"]) == (3, 1.0)
    assert result["chars"]["deletions"] == 5 and result["cer"] == 1.0  # "a b c": spaces count


def test_all_wrong():
    result = score_pairs([("a b c", "x y z", None)])
    assert (result["substitutions"], result["hits"], result["wer"], result["ser"]) == (3, 0, 1.0, 1.0)
    assert result["cer"] == pytest.approx(3 / 5)


def test_insertions_only():
    result = score_pairs([("a b", "a x b y", None)])
    assert (result["insertions"], result["hits"], result["substitutions"], result["deletions"]) == (2, 2, 0, 0)
    assert result["wer"] == 1.0


def test_unicode_text():
    result = score_pairs([("Café ÜBER Straße", "café uber strasse", None)])
    assert (result["substitutions"], result["wer"]) == (1, pytest.approx(1 / 3))
    assert result["cer"] == pytest.approx(1 / 17)


def test_apostrophes_inside_words_are_kept():
    result = score_pairs([("Don't stop 'quoted' rock'n'roll", "dont stop quoted rock'n'roll", None)])
    assert (result["substitutions"], result["wer"]) == (1, 0.25)


def test_normalisation_switches():
    assert score_pairs([("Hello, World", "hello world", None)])["wer"] == 0.0
    assert (
        score_pairs([("Hello, World", "hello world", None)], normalize=NormalizeConfig(case_fold=False))["wer"] == 1.0
    )


def test_per_speaker_split():
    result = score_pairs([("a b", "a b", "s1"), ("c d", "c x", "s1"), ("e f g", "e", "s2")])
    s1, s2 = result["per_speaker"]["s1"], result["per_speaker"]["s2"]
    assert (s1["num_utterances"], s1["ref_words"], s1["substitutions"], s1["wer"], s1["ser"]) == (2, 4, 1, 0.25, 0.5)
    assert (s2["deletions"], s2["wer"]) == (2, pytest.approx(2 / 3))
    assert result["wer"] == pytest.approx(3 / 7)
    assert [u["errors"] for u in result["utterances"]] == [0, 1, 2]


def test_bootstrap_interval_is_seeded_and_brackets_the_wer():
    pairs = [("a b c d", "a b c d" if i % 3 else "a x c", None) for i in range(60)]
    first = score_pairs(pairs)
    assert first["wer_ci95"] == score_pairs(pairs)["wer_ci95"]
    low, high = first["wer_ci95"]
    assert low < first["wer"] < high
    assert score_pairs(pairs, seed=1)["wer_ci95"] != first["wer_ci95"]
    assert score_pairs(pairs, bootstrap_draws=0)["wer_ci95"] is None


def test_report_text_shows_alignment_and_substitutions():
    references = [Transcript("u1", "the cat sat on the mat", "s1"), Transcript("u2", "hi", "s2")]
    hypotheses = [Transcript("u1", "the bat sat on mat"), Transcript("u2", "hi")]
    text = render_text(score(references, hypotheses), ReportConfig(show_worst=5))
    assert "  REF: the CAT sat on THE mat" in text
    assert "  HYP: the BAT sat on *** mat" in text
    assert "      1  cat -> bat" in text
    assert "Worst 1 utterance(s)" in text  # utterances without errors are not listed
    assert "s1 " in text and "all " in text


# --- inputs and their errors ---


def test_missing_hypothesis_is_an_error_or_a_deletion():
    references = [Transcript("a", "one two"), Transcript("b", "three")]
    hypotheses = [Transcript("a", "one two")]
    with pytest.raises(AsrCliError, match=r"1 reference\(s\) have no hypothesis: b .*--missing deletion"):
        score(references, hypotheses)
    result = render_json(score(references, hypotheses, ScoreConfig(missing="deletion")))
    assert (result["deletions"], result["missing_scored_as_deletion"]) == (1, 1)


def test_extra_hypothesis_is_an_error_unless_ignored():
    references = [Transcript("a", "one")]
    hypotheses = [Transcript("a", "one"), Transcript("zz", "x")]
    with pytest.raises(AsrCliError, match="have no reference: zz"):
        score(references, hypotheses)
    assert score(references, hypotheses, ScoreConfig(ignore_extra=True)).overall["wer"] == 0.0


def test_duplicate_ids_on_either_side(tmp_path: Path):
    (tmp_path / "text").write_text("a ONE\nb TWO\na THREE\n")
    with pytest.raises(AsrCliError, match=r"1 duplicate id\(s\): a"):
        read_references(tmp_path / "text")
    (tmp_path / "hyp.jsonl").write_text('{"id": "x", "text": "1"}\n{"id": "x", "text": "2"}\n')
    with pytest.raises(AsrCliError, match="duplicate id.*x"):
        read_hypotheses(tmp_path / "hyp.jsonl")


def test_malformed_hypothesis_line(tmp_path: Path):
    (tmp_path / "hyp.jsonl").write_text('{"id": "x", "text": "1"}\n{"id": "y", "text": \n')
    with pytest.raises(AsrCliError, match="hyp.jsonl, line 2: malformed JSON"):
        read_hypotheses(tmp_path / "hyp.jsonl")
    (tmp_path / "notext.jsonl").write_text('{"id": "x"}\n')
    with pytest.raises(AsrCliError, match="without a text field: x"):
        read_hypotheses(tmp_path / "notext.jsonl")


def test_references_without_text_or_file(tmp_path: Path):
    write_manifest(tmp_path / "m.jsonl", [Utterance("a", "a.wav", text="HI"), Utterance("b", "b.wav")])
    with pytest.raises(AsrCliError, match=r"1 reference\(s\) without text: b"):
        read_references(tmp_path / "m.jsonl")
    with pytest.raises(AsrCliError, match="references not found"):
        read_references(tmp_path / "nope")


def test_reference_formats(tmp_path: Path):
    (tmp_path / "text").write_text("a HELLO WORLD\nb GOOD\n")
    (tmp_path / "utt2spk").write_text("a spk1\nb spk2\n")
    kaldi = read_references(tmp_path / "text")
    assert kaldi == [Transcript("a", "HELLO WORLD", "spk1"), Transcript("b", "GOOD", "spk2")]
    write_tone(tmp_path / "a.wav")
    write_tone(tmp_path / "b.wav")
    write_manifest(
        tmp_path / "m.jsonl", [Utterance("a", "a.wav", "HELLO WORLD", "spk1"), Utterance("b", "b.wav", "GOOD", "spk2")]
    )
    assert read_references(tmp_path / "m.jsonl") == kaldi
    prepare(tmp_path / "m.jsonl", tmp_path / "store", PrepareConfig(show_progress=False))
    assert read_references(tmp_path / "store") == kaldi
    (tmp_path / "hyp.txt").write_text("a hello world\nb good\n")
    assert read_hypotheses(tmp_path / "hyp.txt") == [Transcript("a", "hello world"), Transcript("b", "good")]


def test_cli_writes_json_with_the_documented_keys(tmp_path: Path):
    (tmp_path / "text").write_text("a HELLO WORLD\nb GOOD MORNING\n")
    (tmp_path / "utt2spk").write_text("a spk1\nb spk2\n")
    (tmp_path / "hyp.jsonl").write_text('{"id": "a", "text": "hello word"}\n{"id": "b", "text": "good morning"}\n')
    result = run_cli("score", str(tmp_path / "text"), str(tmp_path / "hyp.jsonl"), "--json", str(tmp_path / "s.json"))
    assert result.code == 0, result.stderr
    assert "WER   25.00%" in result.stdout
    report = json.loads((tmp_path / "s.json").read_text())
    for key in (
        "wer",
        "cer",
        "substitutions",
        "deletions",
        "insertions",
        "ref_words",
        "num_utterances",
        "ser",
        "wer_ci95",
        "per_speaker",
        "utterances",
    ):
        assert key in report
    assert report["wer"] == 0.25 and report["num_utterances"] == 2 and set(report["per_speaker"]) == {"spk1", "spk2"}


def test_cli_input_problem_is_one_line_and_nonzero(tmp_path: Path):
    (tmp_path / "text").write_text("a HELLO\nb GOOD\n")
    (tmp_path / "hyp.txt").write_text("a hello\n")
    result = run_cli("score", str(tmp_path / "text"), str(tmp_path / "hyp.txt"), check=False)
    assert result.code == 1
    assert result.stderr.count("\n") == 1 and "have no hypothesis: b" in result.stderr
    assert not (tmp_path / "s.json").exists()
