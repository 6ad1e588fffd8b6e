"""asr-cli: a command-line speech recognition pipeline (prepare, train, decode, score)."""

__version__ = "0.1.0"
