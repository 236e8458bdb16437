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
# The archive key has its own passphrase, never a custodian's (docs/CLI.md).
export CUSTODY_ARCHIVE_PASSPHRASE=${CUSTODY_ARCHIVE_PASSPHRASE:-demo archive passphrase, use a real one}
custody() { "$PY" -m custody "$@"; }

set -x
custody key new --name "Field team A"
custody init --name "Demo Documentation Centre"
custody ingest tests/data/media --case DEMO-2016-ALEPPO --note "demo ingest of sample media"
custody ingest tests/data/media/aleppo-gps.jpg --case DEMO-2016-ALEPPO   # a second sighting, no second copy
custody list
photo=$(sha256sum tests/data/media/aleppo-gps.jpg | cut -c1-16)
custody show "$photo"          # hashes, EXIF capture time and GPS, device, history
custody log
custody checkpoint -o "$demo/checkpoint.txt"       # signed C2SP checkpoint of the ledger
custody prove "$photo" -o "$demo/proof.json"      # inclusion proofs of the photo's entries
custody verify-proof "$demo/proof.json" --archive-key "$(custody checkpoint --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["verifier_key"])')"
custody verify
