# voxloop: `make demo` and `make test` are the only two set-up commands a user needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench system-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian packages the tests use: chromium + chromium-driver (UI tests), CJK fonts and
# poppler-utils (PDF reports: embedded fonts, pdftotext checks), a Java 17 runtime (the
# optional Spark runner) and R's rpart (peer agreement of the decision tree). Best effort (needs root and apt); the tests that need
# them say why they skip where this could not install them.
SYSTEM_PACKAGES := chromium chromium-driver fonts-wqy-microhei fonts-noto-cjk poppler-utils \
  openjdk-17-jre-headless r-base-core r-cran-rpart
system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then echo "system packages present"; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	  echo "installing:$$missing"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null) \
	    || echo "could not install$$missing; tests that need them will skip"; \
	else echo "not root or no apt-get; missing:$$missing; tests that need them will skip"; fi

demo: $(STAMP)
	$(if $(wildcard ../shared/data),VOXLOOP_UNDERSTAND_CORPORA=../shared/data) $(BIN)/voxloop demo

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: $(STAMP)
	$(BIN)/mypy --strict src/

unit: $(STAMP)
	$(BIN)/pytest -q

test: $(STAMP) system-deps lint typecheck unit

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) voxloop-data .pytest_cache .mypy_cache .ruff_cache
