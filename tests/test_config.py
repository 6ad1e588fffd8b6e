"""The configuration dataclasses are the one source of defaults and choices; the CLI only reads them."""

import ast
import dataclasses
import inspect
from enum import Enum
from pathlib import Path

import pytest
import typer

from asr_cli import cli, config
from asr_cli.config import ConfigError

# The configurations each command's options fill.
COMMAND_CONFIGS = {
    "prepare": [config.FeatureConfig(), config.PrepareConfig()],
    "train": [config.ModelConfig(), config.TrainConfig(), config.SpecAugmentConfig(), config.NoiseConfig()],
    "decode": [config.SearchConfig(), config.DecodeConfig(), config.SpeechActivityConfig()],
    "transcribe": [config.SearchConfig(), config.DecodeConfig(), config.SpeechActivityConfig()],
    "stream": [config.SearchConfig(), config.StreamConfig(), config.LiveConfig()],
    "pack": [config.SearchConfig()],
    "score": [config.ScoreConfig(), config.NormalizeConfig(), config.ReportConfig()],
    "split": [config.SplitConfig()],
    "lm": [config.LmConfig()],
    "perplexity": [config.LmConfig()],
    "synth": [config.CorpusConfig(), config.VoicesConfig()],
    "import csv": [config.CsvImportConfig()],
}
# Options set from a configuration value under another name (a parsed form, or a module constant).
DERIVED_DEFAULTS = {
    ("prepare", "shard"): f"{config.PrepareConfig().shard_index}/{config.PrepareConfig().num_shards}",
    ("train", "spec_augment"): config.SpecAugmentConfig().enabled,
    ("train", "device"): config.DEFAULT_DEVICE,
    ("train", "show_progress"): config.SHOW_PROGRESS,
    ("synth", "show_progress"): config.SHOW_PROGRESS,
    ("pack", "beam_size"): config.LM_BEAM_SIZE,
    ("prepare", "encoder_layer"): config.EncoderConfig.layer,
    ("lm", "prune"): None,  # parsed from "0,1" into LmConfig.prune; none by default
    ("prepare", "encoder_pad"): config.EncoderConfig.pad_to_window,
    # None: decided at run time from something else, and said so in --help.
    ("prepare", "num_mel_bins"): None,  # per feature kind (FeatureConfig.for_kind)
    ("train", "epochs"): None,  # TrainConfig's for a new run; with --resume, the run's own unless given
    ("transcribe", "lm_weight"): None,  # the stored decoding's (asr-cli pack), else SearchConfig's
    ("transcribe", "word_bonus"): None,
    # VoicesConfig's ranges, as the LOW:HIGH text the options parse
    **{
        ("synth", name): "{:g}:{:g}".format(*getattr(config.VoicesConfig(), name))
        for name in ("rate_wpm", "pitch", "noise_snr_db", "rt60_s")
    },  # fmt: skip
    ("stream", "lm_weight"): None,
    ("stream", "word_bonus"): None,
}
CHOICES = {
    "kind": config.FEATURE_KINDS,
    "dtype": config.STORE_DTYPES,
    "architecture": config.ARCHITECTURES,
    "frontend": config.FRONTENDS,
    "cmvn": config.CMVN_MODES,
    "units": config.UNITS,
    "optimizer": config.OPTIMIZERS,
    "precision": config.PRECISIONS,
    "device": config.DEVICES,
    "lm_unit": config.LM_UNITS,
    "unit": config.LM_UNITS,
    "lm_backend": config.LM_BACKENDS,
    "missing": config.MISSING_POLICIES,
    "ref_format": config.REF_FORMATS,
    "hyp_format": config.HYP_FORMATS,
    "vad": config.SPEECH_ACTIVITY_METHODS,
    "output_format": (*config.TRANSCRIPT_FORMATS, "all"),
    "segment_format": config.STREAM_FORMATS,
    "input_format": config.STREAM_INPUT_FORMATS,
}


def _commands() -> dict:
    """Every command that runs (not a group), by its name as typed: `prepare`, `import csv`."""
    return {
        " ".join(path): command
        for path, command in cli.command_tree(typer.main.get_command(cli.app))
        if path and not hasattr(command, "commands")
    }


def _choices_of(param) -> tuple[str, ...] | None:
    """An option's choice list, wherever this Typer version keeps it."""
    holder = getattr(param, "type_descriptor", None) or getattr(param, "type", None)
    choices = getattr(holder, "choices", None)
    return tuple(_plain(choice) for choice in choices) if choices else None


def _plain(value):
    return value.value if isinstance(value, Enum) else value


def test_every_option_default_comes_from_a_configuration():
    commands = _commands()
    assert set(COMMAND_CONFIGS) <= set(commands), "a configured command is missing from the CLI"
    checked = 0
    for name, command in commands.items():
        configs = COMMAND_CONFIGS.get(name, [])
        for param in command.params:
            if param.param_type_name != "option" or param.name == "help":
                continue
            default = _plain(param.default)
            owner = next((c for c in configs if param.name in {f.name for f in dataclasses.fields(c)}), None)
            if (name, param.name) in DERIVED_DEFAULTS:
                assert default == DERIVED_DEFAULTS[(name, param.name)], f"{name} {param.opts[0]}"
            elif owner is not None:
                assert default == getattr(owner, param.name), f"{name} {param.opts[0]}"
            else:  # "not given": an output to write only when asked, a flag that is off, a value found at run time
                assert default in (None, False), f"{name} {param.opts[0]} has a default of its own: {default!r}"
            checked += 1
    assert checked > 90


def test_every_choice_list_comes_from_the_configuration():
    choice_options = 0
    for name, command in _commands().items():
        for param in command.params:
            choices = _choices_of(param)
            if choices is not None:
                assert choices == CHOICES[param.name], f"{name} {param.opts[0]}"
                choice_options += 1
    assert choice_options >= 15


def test_no_literal_default_in_command_signatures():
    """Belt and braces: a number or string written into a command's signature would be a second default."""
    tree = ast.parse(Path(inspect.getsourcefile(cli)).read_text())
    for function in (node for node in tree.body if isinstance(node, ast.FunctionDef) and node.decorator_list):
        for default in function.args.defaults + function.args.kw_defaults:
            if isinstance(default, ast.Constant):
                assert default.value in (None, False), f"{function.name}: literal default {default.value!r}"


def test_api_and_cli_decode_with_the_same_beam():
    """The drift this file prevents: the CLI decoded greedily by default, the library with beam 16."""
    greedy = config.SearchConfig().resolved()
    assert greedy.beam_size == 1 and greedy.is_greedy
    with_lm = config.SearchConfig(lm_path="words.arpa")
    assert with_lm.resolved().beam_size == config.LM_BEAM_SIZE and not with_lm.is_greedy
    assert config.SearchConfig(lexicon_path="words.txt").resolved().beam_size == config.LM_BEAM_SIZE
    assert config.SearchConfig(nbest=4).resolved().beam_size == 4
    assert config.SearchConfig(beam_size=3, lm_path="words.arpa").resolved().beam_size == 3
    assert (
        _commands()["decode"].params[[p.name for p in _commands()["decode"].params].index("beam_size")].default is None
    )


@pytest.mark.parametrize(
    "make, fields, option_text",
    [
        (lambda: config.SearchConfig(beam_size=0), ("beam_size",), "--beam-size must be at least 1, not 0"),
        (
            lambda: config.SearchConfig(beam_size=2, nbest=3),
            ("nbest", "beam_size"),
            "--nbest (3) cannot exceed --beam-size (2)",
        ),
        (lambda: config.TrainConfig(learning_rate=-1.0), ("learning_rate",), "--lr must be positive"),
        (lambda: config.TrainConfig(vtlp_warp=0.7), ("vtlp_warp",), "--vtlp must be in [0, 0.5)"),
        (lambda: config.ModelConfig(num_layers=0), ("num_layers",), "--layers must be at least 1"),
        (lambda: config.FeatureConfig(kind="plp"), ("kind",), "--features must be one of fbank, mfcc"),
        (lambda: config.PrepareConfig(speed_factors=(3.0,)), ("speed_factors",), "--speed-perturb factor 3 is outside"),
        (lambda: config.ScoreConfig(missing="skip"), ("missing",), "--missing must be one of error, deletion"),
    ],
)
def test_invalid_options_name_the_field_and_the_cli_names_the_option(make, fields, option_text):
    with pytest.raises(ConfigError) as caught:
        make()
    assert caught.value.fields == fields
    assert fields[0] in str(caught.value)  # the library speaks of fields
    names = cli._option_names(typer.main.get_command(cli.app))
    assert option_text in caught.value.render(lambda field: names.get(field, field))


def test_option_errors_reach_the_user_as_the_option(tmp_path: Path, capsys):
    status = cli.run(["score", str(tmp_path / "ref.txt"), str(tmp_path / "hyp.txt"), "--bootstrap-draws", "-1"])
    assert status == 1
    assert "error: --bootstrap-draws must be at least 0, not -1" in capsys.readouterr().err


def test_saved_configurations_round_trip():
    train = config.TrainConfig(spec_augment=config.SpecAugmentConfig(1, 2, 3, 4), lexicon="cmudict")
    assert config.TrainConfig.from_dict(train.to_dict()) == train
    model = config.ModelConfig(units="phones", phones=("AA", "B"))
    assert config.ModelConfig.from_dict(model.to_dict()) == model
    features = config.FeatureConfig.for_kind("mfcc", deltas=True)
    assert config.FeatureConfig.from_dict(features.to_dict()) == features
    assert features.num_mel_bins == config.MFCC_NUM_MEL_BINS


def test_the_configuration_module_needs_no_torch():
    import subprocess
    import sys

    code = "import sys, asr_cli.config; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
