# Two entry points on a fresh machine:
#   make demo   install speakerid and run the whole story on a built-in synthetic corpus
#   make test   install speakerid with its test tools and run the test suite
VENV   ?= .venv
PYTHON ?= python3
BIN     = $(VENV)/bin
SUDO    = $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test install install-dev browser

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# Debian's Chromium for the browser test (Playwright drives it; it never downloads a browser).
browser:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; }

demo: install
	$(BIN)/speakerid demo work/demo

test: install-dev browser
	$(BIN)/python -m pytest -q
