#!/usr/bin/env bash
# The test command: install what is missing, then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=${PYTHON:-python3}
# The same checks as on a developer's machine: lint everything, strict types on the pure core.
"$PY" -m ruff check custody store benchmarks tests
"$PY" -m mypy --strict custody/canonical.py custody/entry.py custody/signing.py custody/merkle.py \
  custody/note.py custody/proofs.py custody/custodians.py custody/chain.py custody/permissions.py \
  custody/geo.py custody/tracks.py
exec "$PY" -m pytest -q "$@"
