# pysciml developer targets. Every target that runs code first makes sure .venv exists.
#
# torch is installed first and pinned to exactly 2.13.0: a CPU wheel of that version is
# available locally, whereas any other spec makes pip download a multi-GB CUDA build.
# Once it is installed, "torch>=2.4,<3" in pyproject.toml is already satisfied.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TORCH_SPEC := torch==2.13.0

.PHONY: venv demo demo-gradients test test-all test-julia bench bench-stiff bench-data bench-brusselator bench-adjoint examples-da lint clean distclean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install "$(TORCH_SPEC)"
	$(PY) -m pip install -e ".[dev]"
	@touch $(STAMP)

# The main job: APHYNITY (physics + neural network) fitted to the damped pendulum, against
# physics-only and data-only models; prints its table, writes results/demo/*.png (~1-3 min).
demo: venv
	$(PY) examples/aphynity_pendulum.py --out results/demo

# Solve, differentiate by every sensealg, check against finite differences (seconds).
demo-gradients: venv
	$(PY) examples/demo.py

test: venv
	$(PY) -m pytest -m "not slow" -q --durations=15

test-all: venv
	$(PY) -m pytest -q --durations=15

bench: venv
	$(PY) benchmarks/neural_ode.py

bench-stiff: venv
	$(PY) -m pip install -e ".[bench]"
	$(PY) benchmarks/stiff.py

examples-da: venv
	$(PY) examples/da_lorenz96.py --out results
	$(PY) examples/da_motion_estimation.py --out results

bench-data: venv
	$(PY) benchmarks/data_generation.py

bench-brusselator: venv
	$(PY) benchmarks/brusselator.py

bench-adjoint: venv
	$(PY) benchmarks/adjoint.py

# The Julia runtime's own tests and the conformance suite with its Julia cases (needs Julia
# and `pip install -e ".[julia]"`; see docs/julia.md). Without Julia the Julia cases skip.
test-julia: venv
	julia --project=julia/PySciMLBridge -e 'using Pkg; Pkg.test()'
	$(PY) -m pytest tests/conformance -q

lint: venv
	$(PY) -m ruff check pysciml tests

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
