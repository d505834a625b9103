# The README's two commands: `make demo` (the main job) and `make test`. Each installs
# what it needs first: Debian packages (apt-get, only if missing) and a venv in .venv/.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
OUT    ?= results/demo
RUNS   ?= 3
GUEST  ?= qemu
# real QEMU guests (TCG) by default, with the floor (same migration on a Linux bridge) in
# the same run; GUEST=emulated runs the fast emulated guests instead.
FLOOR  := $(if $(filter qemu,$(GUEST)),--floor)

.PHONY: deps debs venv demo test lint unit integration clean lab-down

deps: debs venv

debs:
	@scripts/install-debs

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,libvirt]'
	@touch $@

demo: deps
	$(BIN)/cutover bench --guest $(GUEST) $(FLOOR) --strategy legacy --strategy claim \
		--stall dst:2000 --runs $(RUNS) --out $(OUT)

lint: venv
	$(BIN)/ruff check src tests
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest -q tests/unit

integration: deps
	$(BIN)/pytest -q tests/integration

test: deps lint
	$(BIN)/pytest -v -rs tests

lab-down: venv
	$(BIN)/cutover lab down

clean:
	rm -rf $(VENV) results .mypy_cache .ruff_cache .pytest_cache
