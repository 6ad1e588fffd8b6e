"""N-gram LMs: Kneser-Ney probabilities by hand, valid ARPA files, and malformed ones."""

from pathlib import Path

import pytest

from asr_cli.errors import AsrCliError
from asr_cli.kneser_ney import build_kneser_ney, kneser_ney_discounts
from asr_cli.lm import SENTENCE_START, read_arpa, read_sentences, tokenize, write_arpa
from tests.helpers import SPEECHOCEAN, require

TOY = [["a", "b"], ["a", "b"], ["b", "a"]]
FIXED_DISCOUNTS = [(0.5, 1.0, 1.5), (0.5, 1.0, 1.5)]


def prob(lm, word, context=()):
    return 10 ** lm.log10_prob(word, context)


def test_toy_bigram_probabilities_computed_by_hand():
    # Unigram continuation counts: a, b and </s> each follow 2 distinct tokens; total 6; every count is 2
    # (discount 1.0), so the interpolation weight is 3 * 1.0 / 6 = 0.5 over 4 tokens (a, b, </s>, <unk>).
    lm = build_kneser_ney(TOY, order=2, discounts=FIXED_DISCOUNTS)
    assert prob(lm, "a") == pytest.approx(1 / 6 + 0.5 / 4)  # 7/24
    assert prob(lm, "<unk>") == pytest.approx(0.5 / 4)
    # After <s>: a seen twice (D=1.0), b once (D=0.5); gamma = (1.0 + 0.5) / 3 = 0.5.
    assert prob(lm, "a", ["<s>"]) == pytest.approx(23 / 48)
    assert prob(lm, "b", ["<s>"]) == pytest.approx(15 / 48)
    assert prob(lm, "</s>", ["<s>"]) == pytest.approx(7 / 48)  # unseen: backs off with weight 0.5
    assert prob(lm, "b", ["a"]) == pytest.approx(23 / 48)
    assert prob(lm, "a", ["b"]) == pytest.approx(15 / 48)
    assert prob(lm, "zzz", ["a"]) == pytest.approx(0.5 * 0.5 / 4)  # an unknown word gets <unk>'s share


def test_modified_kneser_ney_discounts():
    d1, d2, d3 = kneser_ney_discounts([10, 5, 3, 2])  # Y = 10 / (10 + 2 * 5) = 0.5
    assert (d1, d2, d3) == pytest.approx((1 - 2 * 0.5 * 5 / 10, 2 - 3 * 0.5 * 3 / 5, 3 - 4 * 0.5 * 2 / 3))
    assert kneser_ney_discounts([4, 0, 1, 1]) == (0.5, 1.0, 1.5)  # undefined: fixed fallback


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_every_context_sums_to_one_and_the_arpa_file_is_valid(tmp_path: Path, order):
    require(SPEECHOCEAN)
    sentences = read_sentences([SPEECHOCEAN / "text"], "word", strip_ids=True)
    lm = build_kneser_ney(sentences, order)
    write_arpa(lm, tmp_path / "lm.arpa")
    again = read_arpa(tmp_path / "lm.arpa")
    assert again.order == order and [len(t) for t in again.ngrams] == [len(t) for t in lm.ngrams]
    header = (tmp_path / "lm.arpa").read_text().split("\n\n")[0].splitlines()
    assert header[1:] == [f"ngram {n}={len(t)}" for n, t in enumerate(lm.ngrams, start=1)]
    vocabulary = [w for w in again.vocabulary if w != SENTENCE_START]
    contexts = [()] + [ngram for table in again.ngrams[: order - 1] for ngram in list(table)[:40]]
    for context in contexts:
        if context and context[-1] == "</s>":
            continue
        assert sum(prob(again, w, context) for w in vocabulary) == pytest.approx(1.0, abs=1e-4), context


def test_character_tokens():
    assert tokenize("ab c", "char") == ["a", "b", "<space>", "c"]
    lm = build_kneser_ney([tokenize("ab c", "char"), tokenize("a", "char")], order=3)
    assert "<space>" in lm.vocabulary


@pytest.mark.parametrize(
    "text, message",
    [
        ("\\data\\\nngram 1=2\n\n\\1-grams:\n-1.0\ta\n\n\\end\\\n", "declares 2 1-grams but 1 are listed"),
        ("\\data\\\nngram 1=1\n\n\\1-grams:\nabc\ta\n\\end\\\n", "line 5: probability or back-off is not a number"),
        ("\\data\\\nngram one=1\n", "line 2: expected 'ngram N=COUNT'"),
        ("\\data\\\nngram 1=1\n\n\\1-grams:\n-1.0\ta\n", "no \\\\end\\\\ line"),
        ("\\data\\\nngram 1=1\n\n\\2-grams:\n-1.0\ta b\n\\end\\\n", "line 4: section \\\\2-grams: is not declared"),
        ("hello\n", "line 1: unexpected line"),
    ],
)
def test_malformed_arpa_names_the_line(tmp_path: Path, text, message):
    (tmp_path / "bad.arpa").write_text(text)
    with pytest.raises(AsrCliError, match=message):
        read_arpa(tmp_path / "bad.arpa")


def test_lm_text_inputs(tmp_path: Path):
    (tmp_path / "plain.txt").write_text("Hello, World!\n\nSecond line\n")
    (tmp_path / "kaldi_text").write_text("u1 HELLO THERE\nu2\n")
    assert read_sentences([tmp_path / "plain.txt"], "word") == [["hello", "world"], ["second", "line"]]
    assert read_sentences([tmp_path / "kaldi_text"], "word", strip_ids=True) == [["hello", "there"]]
    with pytest.raises(AsrCliError, match="LM text not found"):
        read_sentences([tmp_path / "missing.txt"], "word")
    with pytest.raises(AsrCliError, match="empty"):
        build_kneser_ney([], order=2)


def test_counting_in_chunks_gives_the_counts_of_counting_at_once():
    """Chunks of a few tokens merge to the tables of one count; the trigram counts are the text's."""
    import numpy as np

    from asr_cli.kneser_ney import build_kneser_ney_tables, count_ngrams

    sentences = [["a", "b", "c"], ["b", "c"], ["a", "a", "b"], ["c"]] * 3
    tokens, rows, counts = count_ngrams(sentences, 3)
    _, chunked_rows, chunked_counts = count_ngrams(sentences, 3, chunk_tokens=4)
    for n in range(3):
        assert np.array_equal(np.sort(rows[n], axis=0), np.sort(chunked_rows[n], axis=0))
        assert sorted(counts[n].tolist()) == sorted(chunked_counts[n].tolist())
    trigrams = {tuple(tokens[i] for i in row): int(c) for row, c in zip(rows[2].tolist(), counts[2].tolist())}
    assert trigrams[("<s>", "a", "b")] == 3 and trigrams[("b", "c", "</s>")] == 6 and trigrams[("a", "a", "b")] == 3
    tables = build_kneser_ney_tables(sentences, 3)
    assert tables.counts() == [6, len(rows[1]), len(rows[2])]  # <s>, </s>, <unk>, a, b, c


def test_pruning_keeps_contexts_and_every_context_still_sums_to_one(tmp_path: Path):
    require(SPEECHOCEAN)
    from asr_cli.kneser_ney import build_kneser_ney_tables

    sentences = read_sentences([SPEECHOCEAN / "text"], "word", strip_ids=True)
    full = build_kneser_ney_tables(sentences, 3)
    pruned = build_kneser_ney_tables(sentences, 3, prune=(0, 1))
    assert pruned.counts()[:2] == full.counts()[:2] and pruned.counts()[2] < full.counts()[2] / 2
    pruned.write_arpa(tmp_path / "pruned.arpa")
    lm = read_arpa(tmp_path / "pruned.arpa")
    bigram_contexts = {ngram[:2] for ngram in lm.ngrams[2]}
    assert bigram_contexts <= set(lm.ngrams[1])  # every trigram's context is a stored bigram
    vocabulary = [w for w in lm.vocabulary if w != SENTENCE_START]
    for context in list(lm.ngrams[1])[:30] + [()] + [(w,) for w in vocabulary[:20]]:
        if context and context[-1] == "</s>":
            continue
        assert sum(prob(lm, w, context) for w in vocabulary) == pytest.approx(1.0, abs=1e-4), context


def test_a_vocabulary_limit_maps_the_other_words_to_unk(tmp_path: Path):
    from asr_cli.cli import run

    (tmp_path / "text.txt").write_text("the cat sat\nthe cat ran\nthe dog sat\n")
    (tmp_path / "words.txt").write_text("the\ncat\n")
    assert run(["lm", str(tmp_path / "text.txt"), "-o", str(tmp_path / "a.arpa"), "--vocabulary-size", "2"]) == 0
    assert {w for w in read_arpa(tmp_path / "a.arpa").vocabulary} == {"<s>", "</s>", "<unk>", "the", "cat"}
    assert (
        run(
            [
                "lm",
                str(tmp_path / "text.txt"),
                "-o",
                str(tmp_path / "b.arpa"),
                "--vocabulary",
                str(tmp_path / "words.txt"),
            ]
        )
        == 0
    )
    assert read_arpa(tmp_path / "b.arpa").vocabulary == read_arpa(tmp_path / "a.arpa").vocabulary
    assert run(["lm", str(tmp_path / "text.txt"), "-o", str(tmp_path / "c.arpa"), "--prune", "1,0"]) == 1


def _two_models(tmp_path: Path) -> tuple[Path, Path]:
    from asr_cli.kneser_ney import build_kneser_ney_tables

    build_kneser_ney_tables([["a", "b"], ["a", "b", "c"], ["b", "a"]], 2).write_arpa(tmp_path / "one.arpa")
    build_kneser_ney_tables([["c", "a"], ["c", "c", "b"], ["a", "c"]], 2).write_arpa(tmp_path / "two.arpa")
    return tmp_path / "one.arpa", tmp_path / "two.arpa"


def test_a_mixture_is_the_weighted_sum_of_its_models_and_sums_to_one(tmp_path: Path):
    from asr_cli.lm_mix import mix

    one, two = (read_arpa(path) for path in _two_models(tmp_path))
    mixed = mix([one, two], [0.3, 0.7])
    mixed.write_arpa(tmp_path / "mixed.arpa")
    lm = read_arpa(tmp_path / "mixed.arpa")
    for word, context in (("a", ()), ("b", ("a",)), ("c", ("c",)), ("a", ("b",))):
        expected = 0.3 * prob(one, word, context) + 0.7 * prob(two, word, context)
        assert prob(lm, word, context) == pytest.approx(expected, rel=1e-5)
    vocabulary = [w for w in lm.vocabulary if w != SENTENCE_START]
    for context in [(), ("a",), ("b",), ("c",), ("<s>",)]:
        assert sum(prob(lm, w, context) for w in vocabulary) == pytest.approx(1.0, abs=1e-5), context


def test_weights_tuned_on_held_out_text_favour_the_model_that_predicts_it(tmp_path: Path):
    from asr_cli.cli import run
    from asr_cli.lm_mix import best_mix, perplexity

    paths = _two_models(tmp_path)
    models = [read_arpa(p) for p in paths]
    held_out = [["c", "a"], ["a", "c"], ["c", "c"]]
    weights = best_mix(models, held_out)
    assert weights[1] > 0.5 and sum(weights) == pytest.approx(1.0)
    (tmp_path / "dev.txt").write_text("c a\na c\nc c\n")
    assert run(["lm", "--mix", str(paths[0]), "--mix", str(paths[1]), "--tune-on", str(tmp_path / "dev.txt"),
                "-o", str(tmp_path / "mixed.arpa")]) == 0  # fmt: skip
    mixed = read_arpa(tmp_path / "mixed.arpa")
    assert perplexity(mixed, held_out).perplexity < perplexity(models[0], held_out).perplexity
    result = perplexity(models[0], [["a", "zebra"]])
    assert result.words == 2 and result.oov == 1 and result.oov_rate == 0.5


@pytest.mark.parametrize("arguments, problem", [
    (["--mix", "one.arpa", "--mix", "two.arpa", "--weights", "0.5,0.6"], "sum to 1"),
    (["--mix", "one.arpa", "--mix", "two.arpa", "--weights", "1.0"], "1 weight(s) for 2 models"),
    (["--mix", "one.arpa", "--mix", "two.arpa"], "--mix needs the weights"),
    (["--mix", "one.arpa", "--mix", "three.arpa", "--weights", "0.5,0.5"], "different orders"),
    (["text.txt", "--mix", "one.arpa", "--mix", "two.arpa", "--weights", "0.5,0.5"], "give no text"),
    (["empty.txt"], "the language-model text is empty"),
    (["latin1.txt"], "line 1: not valid UTF-8"),
])  # fmt: skip
def test_bad_mixtures_and_texts(tmp_path: Path, arguments, problem):
    from asr_cli.kneser_ney import build_kneser_ney_tables
    from tests.helpers import refused

    _two_models(tmp_path)
    build_kneser_ney_tables([["a", "b", "c"]], 3).write_arpa(tmp_path / "three.arpa")
    (tmp_path / "text.txt").write_text("a b\n")
    (tmp_path / "empty.txt").write_text("\n\n")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    full = [str(tmp_path / a) if a.endswith((".arpa", ".txt")) else a for a in arguments]
    refused("lm", *full, "-o", tmp_path / "out.arpa", names=problem)
    assert not (tmp_path / "out.arpa").exists()


def test_perplexity_command(tmp_path: Path):
    from tests.helpers import run_cli

    one, _ = _two_models(tmp_path)
    (tmp_path / "dev.txt").write_text("a b\nb a zebra\n")
    output = run_cli("perplexity", tmp_path / "dev.txt", "--lm", one, "--json").stdout
    import json

    record = json.loads(output)
    assert record["words"] == 5 and record["oov"] == 1 and record["perplexity"] > 1


def test_a_mixture_of_other_vocabularies_still_sums_to_one(tmp_path: Path, caplog):
    """Each model's <unk> probability is shared among the words it lacks: giving each the whole of it made
    the mixture sum far over one (a perplexity of 12,902 for a text the parts scored near 100)."""
    from asr_cli.kneser_ney import build_kneser_ney_tables
    from asr_cli.lm_mix import check_mixable, mix

    build_kneser_ney_tables([["a", "b"], ["a", "b", "a"]], 2).write_arpa(tmp_path / "small.arpa")
    build_kneser_ney_tables([["c", "d", "e"], ["e", "f", "a"], ["g", "h"]], 2).write_arpa(tmp_path / "other.arpa")
    models = [read_arpa(tmp_path / "small.arpa"), read_arpa(tmp_path / "other.arpa")]
    check_mixable(models, ["small", "other"])
    assert "different vocabularies" in caplog.text
    mix(models, [0.5, 0.5]).write_arpa(tmp_path / "mixed.arpa")
    lm = read_arpa(tmp_path / "mixed.arpa")
    vocabulary = [w for w in lm.vocabulary if w != SENTENCE_START]
    for context in [(), ("a",), ("c",), ("<s>",)]:
        assert sum(prob(lm, w, context) for w in vocabulary) == pytest.approx(1.0, abs=1e-5), context


def test_a_context_with_nothing_to_back_off_with_is_written_readably(tmp_path: Path):
    """Discounts of 0 leave a context no back-off mass: its weight is written -99, not -inf (read_arpa refused
    such a file, which the synthetic test corpus produced)."""
    from asr_cli.kneser_ney import build_kneser_ney_tables

    build_kneser_ney_tables(TOY, 2, discounts=[(0.0, 0.0, 0.0)] * 2).write_arpa(tmp_path / "lm.arpa")
    lm = read_arpa(tmp_path / "lm.arpa")
    assert lm.ngrams[0][("a",)][1] == -99.0


def test_a_text_whose_counts_would_pass_the_memory_limit_is_refused_while_it_is_read(tmp_path: Path):
    """--max-memory is checked after each chunk: the build stops early, says what to change, writes nothing; a
    limit the counts fit in builds the model."""
    from tests.helpers import refused, run_cli

    text = tmp_path / "text.txt"
    text.write_text("".join(f"w{i} w{i + 1} w{i + 2} w{(i * 7) % 1000}\n" for i in range(20_000)))
    message = refused("lm", text, "-o", tmp_path / "lm.arpa", "--max-memory", "0.01", names="over the 0.0 GB")
    assert "--prune" in message and "--max-memory" in message
    assert not (tmp_path / "lm.arpa").exists()
    run_cli("lm", text, "-o", tmp_path / "lm.arpa", "--max-memory", "4")
    assert read_arpa(tmp_path / "lm.arpa").order == 3
    refused("lm", text, "-o", tmp_path / "lm2.arpa", "--max-memory", "0", names="positive")


def test_counting_reads_the_text_lazily():
    """The sentences are consumed chunk by chunk (the text is never all in memory): a build refused at its first
    chunk has drawn that chunk's sentences from the generator and no more."""
    from asr_cli.kneser_ney import LmTooLargeError, count_ngrams

    consumed = []

    def sentences():
        for i in range(1000):
            consumed.append(i)
            yield ["a", "b", f"w{i}"]

    with pytest.raises(LmTooLargeError):
        count_ngrams(sentences(), 3, chunk_tokens=50, memory_limit_bytes=1)
    assert 0 < len(consumed) < 20  # stopped at the first chunk (50 tokens: 10 sentences of 5)
