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

# OVN versions the version-dependent integration tests run on again after the full suite
# on the host's OVN (each a Debian root built once into /var/cache/cutover/roots).
TEST_OVNS ?= 25.03 26.03
OVN_TESTS := tests/integration/test_ovn_install.py tests/integration/test_migration.py \
	tests/integration/test_port_ready.py tests/integration/test_path_ready.py \
	tests/integration/test_nb_cfg.py

.PHONY: deps debs venv demo test test-ovn lint unit integration clean lab-down

deps: debs venv

debs:
	@scripts/install-debs

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,libvirt]'
	$(BIN)/python scripts/ovs-json-accel
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
	$(MAKE) --no-print-directory test-ovn

# claim, legacy, nb-cfg, port-ready (both paths), path-ready, every rollback, the CLI bench,
# and the install checks, on each of TEST_OVNS; a root that cannot be built fails them.
test-ovn: deps
	@set -e; for v in $(TEST_OVNS); do \
		echo "== integration tests on OVN $$v =="; \
		CUTOVER_TEST_OVN=$$v $(BIN)/pytest -v -rs $(OVN_TESTS); \
	done

lab-down: venv
	$(BIN)/cutover lab down

clean:
	rm -rf $(VENV) results .mypy_cache .ruff_cache .pytest_cache
