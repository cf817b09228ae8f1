# The two commands of the README: `make run` and `make test`. Both use the virtualenv .venv.
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTHON_SYSTEM ?= python3

.PHONY: run test typecheck install bench-engine clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(PYTHON) || $(PYTHON_SYSTEM) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -r requirements.txt
	$(VENV)/bin/pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PYTHON) -m demo.run

test: $(STAMP)
	$(PYTHON) -m pytest $(PYTEST_ARGS)

# The engine has no Django in it, so it is checked strictly; options in pyproject.toml's [tool.mypy].
typecheck: $(STAMP)
	$(PYTHON) -m mypy --strict vlm_engine

clean:
	rm -rf $(VENV) var build dist *.egg-info
