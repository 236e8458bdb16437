#!/usr/bin/env bash
# The main job on the embedded default (SQLite + a local folder, no server): make a custodian key
# and an archive, ingest the sample photos and videos this repository ships, show one item, verify.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=${PYTHON:-python3}
demo=${DEMO_DIR:-demo}
rm -rf "$demo"
mkdir -p "$demo"
export CUSTODY_ARCHIVE="$demo/archive" CUSTODY_KEY="$demo/field-team.key"
export CUSTODY_PASSPHRASE=${CUSTODY_PASSPHRASE:-demo passphrase, use a real one}
custody() { "$PY" -m custody "$@"; }

set -x
custody key new --name "Field team A"
custody init --name "Demo Documentation Centre"
custody ingest tests/data/media --case DEMO-2016-ALEPPO --note "demo ingest of sample media"
custody ingest tests/data/media/photo-aleppo.jpg --case DEMO-2016-ALEPPO   # a second sighting, no second copy
custody list
custody show "$(custody list --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)[0]["sha256"])')"
custody log
custody verify
