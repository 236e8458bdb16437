#!/usr/bin/env bash
# The main job on the embedded default (SQLite + a local folder, no server): make a custodian key
# and an archive, ingest the sample photos and videos this repository ships, show one item, verify.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck source=scripts/python.sh
. scripts/python.sh   # PY: the active virtual environment's python, else .venv's
demo=${DEMO_DIR:-demo}
rm -rf "$demo"
mkdir -p "$demo"
demo_abs=$(cd "$demo" && pwd)
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
set +x

# What a user needs to carry on from here.
cat >&2 <<EOF

demo: done. The archive is in $demo_abs/archive, signed by the key $demo_abs/field-team.key
demo: (passphrase: "$CUSTODY_PASSPHRASE"${CUSTODY_ARCHIVE_PASSPHRASE:+; archive key passphrase: "$CUSTODY_ARCHIVE_PASSPHRASE"}).
demo: to carry on with it in this shell:
  . $VENV_DIR/bin/activate     # puts the custody command on your PATH (or: pipx install .)
  export CUSTODY_ARCHIVE=$demo_abs/archive CUSTODY_KEY=$demo_abs/field-team.key
  export CUSTODY_PASSPHRASE='$CUSTODY_PASSPHRASE'${CUSTODY_ARCHIVE_PASSPHRASE:+ CUSTODY_ARCHIVE_PASSPHRASE='$CUSTODY_ARCHIVE_PASSPHRASE'}
  custody list                 # then: custody show $photo, custody log, custody verify
  custody export --case DEMO-2016-ALEPPO --purpose "try an evidence package" -o $demo/case.zip
  custody verify-package $demo/case.zip
README.md ("Using it") and docs/CLI.md list every command.
EOF
