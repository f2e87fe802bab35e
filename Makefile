# The two commands of the README: `make demo` (main job end to end) and `make test`.
# Both create the virtual environment on first use (CPU stack: see requirements.txt).
VENV ?= .venv
PYTHON ?= python3
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
DEMO_CONFIG ?= configs/synthetic.yaml
DEMO_RUN ?= runs/demo

.PHONY: setup demo test docs-check clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt setup.cfg pyproject.toml third_party/fbgemm_gpu_alias/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

# Generate the synthetic dataset, train DARE with torchx on 2 processes (in its own folder, runs/demo, replaced
# on every demo), evaluate the checkpoint on the test split with 2 processes, print AUC / GAUC / logloss next
# to the oracle AUC, and check them against the README's table (tests/demo_numbers.py).
demo: setup
	dare-rec prepare --source synthetic --config $(DEMO_CONFIG)
	torchx run -s local_cwd launch/components.py:train -j 1x2 --config $(DEMO_CONFIG) -- --train.output_dir $(DEMO_RUN) --train.resume never --train.overwrite true
	torchx run -s local_cwd launch/components.py:evaluate -j 1x2 --checkpoint $(DEMO_RUN) -- --output $(DEMO_RUN)/eval-test.json
	@echo; cat $(DEMO_RUN)/eval-test.md
	$(BIN)/python -m tests.demo_numbers $(DEMO_RUN)/eval-test.json

test: setup
	$(BIN)/python -m pytest -q

# Every command of the README and docs, in order, in a fresh clone of HEAD (tests/docs_commands.py; 17 min on
# 2 quiet CPU cores): report in runs/docs_commands/report.md, exit 1 if any fails or a committed file changes.
docs-check: setup
	$(BIN)/python -m tests.docs_commands

clean:
	rm -rf $(VENV) runs data .pytest_cache .hypothesis
