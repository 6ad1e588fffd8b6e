"""The `decode` step (decode.py over the inference core): stores, manifests and audio files in, hypothesis files
and CTM out, and its bad inputs."""

import json
import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from asr_cli.config import DecodeConfig, FeatureConfig, SearchConfig
from asr_cli.decode import decode_inputs
from asr_cli.errors import AsrCliError
from asr_cli.kneser_ney import build_kneser_ney
from asr_cli.lm import tokenize, write_arpa
from asr_cli.manifest import Utterance, write_manifest
from asr_cli.model import load_model_file
from asr_cli.search import greedy_decode
from asr_cli.store import FeatureStore
from tests.helpers import make_store, write_tone


def test_greedy_decoding_writes_the_models_best_paths(tmp_path: Path, tiny_model, tiny_stores):
    _, valid_store = tiny_stores
    decode_inputs(
        tiny_model,
        [valid_store],
        tmp_path / "beam1.jsonl",
        DecodeConfig(search=SearchConfig(beam_size=1), show_progress=False),
    )
    model = load_model_file(tiny_model).model
    store = FeatureStore(valid_store)
    vocabulary = load_model_file(tiny_model).vocabulary
    decoded = [json.loads(line) for line in (tmp_path / "beam1.jsonl").read_text().splitlines()]
    for record in decoded:
        features = torch.from_numpy(store.features(record["id"]))[None]
        with torch.no_grad():
            log_probs, lengths = model(features, torch.tensor([features.shape[1]]))
        assert record["text"] == " ".join(vocabulary.decode(greedy_decode(log_probs, lengths)[0]).split())


def test_timestamps_are_monotonic_and_inside_the_audio(tmp_path: Path, tiny_model, tiny_stores):
    _, valid_store = tiny_stores
    decode_inputs(
        tiny_model,
        [valid_store],
        tmp_path / "hyp.jsonl",
        DecodeConfig(search=SearchConfig(beam_size=4, nbest=2), show_progress=False),
        ctm_path=tmp_path / "hyp.ctm",
    )
    store = FeatureStore(valid_store)
    records = [json.loads(line) for line in (tmp_path / "hyp.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [e.id for e in store]  # input order
    for record in records:
        assert len(record["nbest"]) <= 2 and record["nbest"][0]["text"] == record["text"]
        starts = [w["start"] for w in record["words"]]
        assert starts == sorted(starts)
        duration = store.entry(record["id"]).duration
        assert all(0 <= w["start"] <= w["end"] <= duration for w in record["words"])
        assert " ".join(w["word"] for w in record["words"]) == record["text"]
    ctm_words = sum(len(r["words"]) for r in records)
    assert len((tmp_path / "hyp.ctm").read_text().splitlines()) == ctm_words


def test_decoding_from_audio_uses_the_models_features(tmp_path: Path, tiny_model, tiny_stores, speechocean_utterances):
    from asr_cli.inference import collect_sources, frame_reader

    _, valid_store = tiny_stores
    store = FeatureStore(valid_store)
    utterances = [u for u in speechocean_utterances if u.id in store]
    write_manifest(tmp_path / "audio.jsonl", utterances)
    model = load_model_file(tiny_model)
    sources, _ = collect_sources([tmp_path / "audio.jsonl"], model.feature_config)
    assert [s.id for s in sources] == [u.id for u in utterances]
    read = frame_reader(None, model)
    for source in sources:
        assert source.num_frames == store.entry(source.id).num_frames
        from_audio = read(source)
        np.testing.assert_allclose(from_audio, store.features(source.id), atol=0.02, rtol=0.002)  # float16 storage
    decode_inputs(tiny_model, [tmp_path / "audio.jsonl"], tmp_path / "hyp.jsonl", DecodeConfig(show_progress=False))
    records = [json.loads(line) for line in (tmp_path / "hyp.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [u.id for u in utterances]


# --- bad input ---


def test_empty_and_too_short_audio_give_empty_hypotheses(tmp_path: Path, tiny_model, caplog):
    write_tone(tmp_path / "short.wav", seconds=0.01)
    write_tone(tmp_path / "ok.wav", seconds=0.5)
    decode_inputs(
        tiny_model,
        [tmp_path / "short.wav", tmp_path / "ok.wav"],
        tmp_path / "hyp.jsonl",
        DecodeConfig(show_progress=False),
    )
    records = [json.loads(line) for line in (tmp_path / "hyp.jsonl").read_text().splitlines()]
    assert records[0] == {"id": "short", "text": "", "score": 0.0}
    assert any(
        record.levelname == "WARNING" and "short: shorter than one frame" in record.message for record in caplog.records
    )


def test_missing_audio_is_an_error(tmp_path: Path, tiny_model):
    write_manifest(tmp_path / "m.jsonl", [Utterance("x", "nope.wav")])
    with pytest.raises(AsrCliError, match=r"1 input\(s\) cannot be read .*\n.*audio file not found: .*nope.wav"):
        decode_inputs(tiny_model, [tmp_path / "m.jsonl"], tmp_path / "hyp.jsonl", DecodeConfig(show_progress=False))
    assert not (tmp_path / "hyp.jsonl").exists()


def test_audio_files_with_the_same_name_are_refused(tmp_path: Path, tiny_model):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        write_tone(tmp_path / folder / "take1.wav")
    with pytest.raises(AsrCliError, match="same name would get the same id: take1"):
        decode_inputs(
            tiny_model,
            [tmp_path / "a" / "take1.wav", tmp_path / "b" / "take1.wav"],
            tmp_path / "hyp.jsonl",
            DecodeConfig(show_progress=False),
        )


def test_unknown_or_corrupt_model_file(tmp_path: Path, tiny_model):
    (tmp_path / "garbage.pt").write_bytes(b"not a model at all")
    with pytest.raises(AsrCliError, match="not a readable asr-cli model file"):
        load_model_file(tmp_path / "garbage.pt")

    class Payload:
        def __reduce__(self):
            return (print, ("code ran",))

    (tmp_path / "pickle.pt").write_bytes(pickle.dumps({"model_config": Payload()}))
    with pytest.raises(AsrCliError, match="not a readable asr-cli model file") as refusal:
        load_model_file(tmp_path / "pickle.pt")  # weights_only refuses to run code
    assert "weights_only" not in str(refusal.value) and "never loads" in str(refusal.value)
    torch.save({"something": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(AsrCliError, match="not an asr-cli model file"):
        load_model_file(tmp_path / "other.pt")
    with pytest.raises(AsrCliError, match="model file not found"):
        load_model_file(tmp_path / "missing.pt")
    truncated = tiny_model.read_bytes()[:1000]
    (tmp_path / "truncated.pt").write_bytes(truncated)
    with pytest.raises(AsrCliError, match="not a readable"):
        load_model_file(tmp_path / "truncated.pt")


def test_store_with_other_features_than_the_model(tmp_path: Path, tiny_model, speechocean_utterances):
    mfcc = make_store(tmp_path / "mfcc", speechocean_utterances[:2], feature_config=FeatureConfig.for_kind("mfcc"))
    with pytest.raises(AsrCliError, match="other features than the model.*kind: store 'mfcc', model 'fbank'"):
        decode_inputs(tiny_model, [mfcc], tmp_path / "hyp.jsonl", DecodeConfig(show_progress=False))


def test_lm_vocabulary_mismatch_reports_the_oov_rate(tmp_path: Path, tiny_model, tiny_stores, caplog):
    _, valid_store = tiny_stores
    write_arpa(build_kneser_ney([["привет", "мир"], ["hello", "мир"]], 2), tmp_path / "other.arpa")
    with caplog.at_level(logging.INFO, logger="asr_cli"):
        decode_inputs(
            tiny_model,
            [valid_store],
            tmp_path / "hyp.jsonl",
            DecodeConfig(search=SearchConfig(beam_size=2, lm_path=str(tmp_path / "other.arpa")), show_progress=False),
        )
    err = caplog.text
    assert "66.7% of them use characters the model cannot produce" in err and "most of the LM's vocabulary" in err


def test_malformed_arpa_through_decode(tmp_path: Path, tiny_model, tiny_stores):
    (tmp_path / "bad.arpa").write_text("\\data\\\nngram 1=1\n\n\\1-grams:\nx\n")
    with pytest.raises(AsrCliError, match="bad.arpa, line 5"):
        decode_inputs(
            tiny_model,
            [tiny_stores[1]],
            tmp_path / "hyp.jsonl",
            DecodeConfig(search=SearchConfig(lm_path=str(tmp_path / "bad.arpa")), show_progress=False),
        )


def test_decode_with_the_kenlm_backend_writes_what_the_arpa_backend_writes(tmp_path: Path, tiny_model, tiny_stores):
    pytest.importorskip("kenlm")
    train_store, valid_store = tiny_stores
    sentences = [tokenize(entry.text.lower(), "word") for entry in FeatureStore(train_store)]
    write_arpa(build_kneser_ney(sentences, 3), tmp_path / "words.arpa")
    outputs = {}
    for backend in ("arpa", "kenlm"):
        outputs[backend] = tmp_path / f"{backend}.jsonl"
        summary = decode_inputs(
            tiny_model,
            [valid_store],
            outputs[backend],
            DecodeConfig(
                search=SearchConfig(
                    beam_size=8, lm_weight=0.8, nbest=3, lm_path=str(tmp_path / "words.arpa"), lm_backend=backend
                ),
                show_progress=False,
            ),
        )
        assert 0 <= summary["lm_oov_rate"] < 0.5
    arpa_records = [json.loads(line) for line in outputs["arpa"].read_text().splitlines()]
    kenlm_records = [json.loads(line) for line in outputs["kenlm"].read_text().splitlines()]
    for kenlm_record, arpa_record in zip(kenlm_records, arpa_records, strict=True):
        assert [h["text"] for h in kenlm_record["nbest"]] == [h["text"] for h in arpa_record["nbest"]]
        assert [h["score"] for h in kenlm_record["nbest"]] == pytest.approx(
            [h["score"] for h in arpa_record["nbest"]], abs=1e-3
        )
