# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test bench bench-million chaos dist bundle clean venv

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# the dev install (editable, with test tools and the optional Sage extra)
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[dev,sage]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/dsage gui

# two pytest processes: the GUI tests run Twisted on Qt's loop, the others on the default reactor,
# and one process can hold only one reactor
# then the behaviour tests again under the plain latency policy (dsage_core/latency.py: no holds,
# lazy reads, coalescing or unanswered sends): behaviour must not depend on the timing tricks
test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q --ignore=tests/gui
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q tests/gui
	DSAGE_LATENCY=plain QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -m "not slow" tests/core tests/integration

# bench/multihost.py: W1/W2 across a 20 ms link beside loopback (network namespaces: root only;
# otherwise it prints "skipped: needs root")
bench: $(STAMP)
	$(PY) bench/run.py
	$(PY) bench/multihost.py

# a million no-op jobs through one client and server (minutes; not in bench): JOBS=100000 for a short run
JOBS ?= 1000000
bench-million: $(STAMP)
	$(PY) bench/million.py --jobs $(JOBS)

chaos: $(STAMP)
	DSAGE_CHAOS=full QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q tests/chaos -s

dist: $(STAMP)
	rm -rf dist
	$(PY) -m build --sdist --wheel --outdir dist .

bundle: $(STAMP)
	$(PY) -m pip install -q 'pyinstaller>=6'
	$(VENV)/bin/pyinstaller --noconfirm --distpath dist/bundle --workpath build/pyinstaller packaging/dsage.spec

clean:
	rm -rf build dist *.egg-info
