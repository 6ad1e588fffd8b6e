"""asr-cli: a command-line speech recognition pipeline (prepare, train, decode, score), and its Python API:

import asr_cli
model = asr_cli.load_model("exp/model.pt")
print(model.transcribe("speech.wav").text)
"""

__version__ = "0.1.0"
__all__ = ["load_model", "transcribe", "Recognizer", "Transcription", "WordTiming", "__version__"]


def __getattr__(name: str):
    # Lazy, so that `import asr_cli` (and the CLI's start) does not load torch.
    if name in ("load_model", "transcribe", "Recognizer"):
        from . import recognizer

        return getattr(recognizer, name)
    if name in ("Transcription", "WordTiming"):
        from . import results

        return getattr(results, name)
    raise AttributeError(f"module 'asr_cli' has no attribute {name!r}")
