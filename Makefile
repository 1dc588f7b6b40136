# Two commands on a fresh machine: `make run` and `make test`. Only Python 3.11+ and make assumed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install run test test-fast lint scan-secrets validate-sql check benchmark detection-matrix airflow dag-test clean

help:
	@echo "make run        set up, then run the pipeline on generated data (embedded DuckDB)"
	@echo "make test       set up, then lint, secrets scan, T-SQL validation and the whole test suite"
	@echo "make test-fast  unit tests only"
	@echo "make benchmark  measure generation + load, quality vs build, Airflow vs dataops, the run history, an exporter scrape, publish vs build, slim vs full deploy into BENCHMARKS.md"
	@echo "make detection-matrix  inject every fault class, run the pipeline, write DETECTION.md"
	@echo "make airflow    Airflow standalone on http://127.0.0.1:8080 with the project's DAGs (Ctrl-C stops)"
	@echo "make dag-test   airflow dags test adventureworks_pipeline in a throwaway AIRFLOW_HOME"
	@echo "make clean      remove the virtualenv, warehouse and generated files"

# Reinstall whenever the declared dependencies change.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,airflow]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/dataops run --scale 1

# ruff on the Python, SQLFluff on the dbt models (rendered for SQL Server offline, see .sqlfluff),
# the GitHub workflows and actions against the schemas check-jsonschema ships (no network).
lint: $(STAMP)
	$(BIN)/ruff check src tests scripts airflow
	$(BIN)/ruff format --check src tests scripts airflow
	$(BIN)/python scripts/sqlfluff_dbt.py lint dbt/models
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(BIN)/check-jsonschema --builtin-schema vendor.github-actions .github/actions/*/action.yml

check: $(STAMP)
	$(BIN)/dataops check

# No password, token or webhook URL may enter the repository (detect-secrets against the baseline).
scan-secrets: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" scripts/check_secrets.sh  # pragma: allowlist secret

# The production target is SQL Server: prove the whole project is valid T-SQL without a server.
validate-sql: $(STAMP)
	$(BIN)/dataops compile --target prod --validate

test: $(STAMP) lint scan-secrets validate-sql
	$(BIN)/pytest

test-fast: $(STAMP)
	$(BIN)/pytest tests/unit

benchmark: $(STAMP)
	$(BIN)/python scripts/benchmark.py --scale 1 --scale 10 --scale 100 --write BENCHMARKS.md
	$(BIN)/python scripts/benchmark.py --quality --scale 1 --scale 10 --write BENCHMARKS.md
	$(BIN)/python scripts/benchmark.py --airflow --scale 1 --write BENCHMARKS.md
	$(BIN)/python scripts/benchmark_history.py --write BENCHMARKS.md
	$(BIN)/python scripts/benchmark_exporter.py --write BENCHMARKS.md
	$(BIN)/python scripts/benchmark_publish.py --write BENCHMARKS.md
	$(BIN)/python scripts/benchmark_deploy.py --write BENCHMARKS.md
	$(BIN)/python scripts/benchmark_metrics.py --write BENCHMARKS.md

airflow: $(STAMP)
	$(BIN)/python scripts/airflow_local.py standalone

dag-test: $(STAMP)
	$(BIN)/python scripts/airflow_local.py dag-test

detection-matrix: $(STAMP)
	$(BIN)/python scripts/detection_matrix.py

clean:
	rm -rf $(VENV) warehouse data dbt/target dbt/logs
