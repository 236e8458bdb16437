#!/usr/bin/env bash
# The test command: install what is missing (scripts/setup.sh), lint, type-check, run the tests.
#   bash scripts/test.sh            the full suite, what CI runs: about 22 minutes on 2 cores
#   bash scripts/test.sh --quick    the quick suite (tests not marked slow): under 2 minutes
# Any other arguments go to pytest (e.g. bash scripts/test.sh tests/test_cli.py -x).
set -euo pipefail
cd "$(dirname "$0")/.."
quick=
if [ "${1:-}" = "--quick" ]; then quick=1; shift; fi
started=$SECONDS
bash scripts/setup.sh
# shellcheck source=scripts/python.sh
. scripts/python.sh
echo "test: lint (ruff), layers (lint-imports), strict types on the whole tree (mypy)" >&2
# The same checks as on a developer's machine: lint everything; the import contracts of
# pyproject.toml's [tool.importlinter] (docs/ARCHITECTURE.md, "Import rules"); strict types on
# every module of custody and store.
"$PY" -m ruff check custody store benchmarks tests
"$(dirname "$PY")/lint-imports" --no-cache
"$PY" -m mypy --strict custody store
if [ -n "$quick" ]; then
  echo "test: the quick suite (not the tests marked slow): under 2 minutes; progress in % below" >&2
  set -- -m "not slow" "$@"
else
  echo "test: the full suite, one worker per core (pytest-xdist): about 22 minutes on 2 cores (bash scripts/test.sh --quick: under 2); progress in % below" >&2
  # Tests are independent (each has its own tmp_path archive), so they run on every core.
  set -- -n auto "$@"
fi
status=0
"$PY" -m pytest -q "$@" || status=$?
echo "test: took $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s" >&2
exit "$status"
