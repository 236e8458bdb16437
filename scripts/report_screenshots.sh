#!/usr/bin/env bash
# Make docs/report-example.png (first screen of the HTML report, headless Chromium) and
# docs/report-example-pdf.png (first page of the PDF, pdftoppm) from a small story played through
# the real command line: a field team ingests, an investigator reads and hands over, a colleague
# accepts and notes in Arabic, a reviewer makes the case report with a stated purpose.
# Needs: custody installed (scripts/setup.sh makes .venv), chromium, poppler-utils. Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/python.sh
. scripts/python.sh   # PY: the active virtual environment's python, else .venv's (scripts/setup.sh)
CHROMIUM=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$CHROMIUM" ] || { echo "report_screenshots: needs chromium (apt-get install chromium)" >&2; exit 3; }
command -v pdftoppm >/dev/null || { echo "report_screenshots: needs pdftoppm (poppler-utils)" >&2; exit 3; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
media=tests/data/media
export CUSTODY_ARCHIVE="$work/archive" CUSTODY_KEY="$work/keys/admin.key"
export CUSTODY_PASSPHRASE="example passphrase" CUSTODY_ARCHIVE_PASSPHRASE="example archive passphrase" HOME="$work/home" XDG_CONFIG_HOME="$work/home/.config"
c() { "$PY" -m custody "$@"; }
as() { local who=$1; shift; CUSTODY_KEY="$work/keys/$who.key" "$PY" -m custody "$@"; }

c key new --name "Documentation Centre Admin" >/dev/null 2>&1
c init --name "Syrian Documentation Centre" >/dev/null
for spec in "farah:Farah Haddad:field" "ivan:Ivan Petrov:investigator" \
            "jana:جنى الأحمد:investigator" "rami:Rami Khoury:reviewer"; do
  IFS=: read -r who name role <<<"$spec"
  as "$who" key new --name "$name" -o "$work/keys/$who.key" >/dev/null 2>&1
  c enroll "$work/keys/$who.key.pub" --role "$role" >/dev/null
done
mkdir -p "$work/card/DCIM"
cp "$media/aleppo-gps.jpg" "$work/card/DCIM/IMG_0413.JPG"
cp "$media/homs-loci.mp4" "$work/card/DCIM/VID_0414.MP4"
as farah ingest "$work/card" --case ALEPPO-2016 --note "collected from the SCD team, 2016-10-04" >/dev/null 2>&1
photo=$("$PY" -c 'import hashlib,sys;print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$media/aleppo-gps.jpg")
as ivan get "${photo:0:12}" --purpose "geolocation check for the M10 dossier" -o "$work/copy.jpg" >/dev/null
offer=$(as ivan transfer "${photo:0:12}" --to "جنى الأحمد" --purpose "handover to the legal team" --json | "$PY" -c 'import json,sys;print(json.load(sys.stdin)[0]["offer"])')
as jana accept "$offer" >/dev/null
as jana note "${photo:0:12}" --text "مستشفى M10، حلب — الضربة الثانية" >/dev/null
as ivan incident new M10-2016-10-03 --date 2016-10-03 --case ALEPPO-2016 \
  --place "36.2050,37.1300,M10 hospital" --description "strike on the M10 hospital" >/dev/null
as ivan incident add M10-2016-10-03 "${photo:0:12}" >/dev/null

purpose="legal review before filing with the court"
as rami report --case ALEPPO-2016 --purpose "$purpose" -o "$work/report.html" 2>/dev/null
as rami report --case ALEPPO-2016 --purpose "$purpose" -o "$work/report.pdf" 2>/dev/null

"$CHROMIUM" --headless --no-sandbox --disable-gpu --hide-scrollbars --force-device-scale-factor=1 \
  --window-size=1000,1414 --screenshot="$work/html.png" "file://$work/report.html" >/dev/null 2>&1
mv "$work/html.png" docs/report-example.png
pdftoppm -png -r 100 -f 1 -l 1 -singlefile "$work/report.pdf" "$work/pdf"
mv "$work/pdf.png" docs/report-example-pdf.png
echo "wrote docs/report-example.png and docs/report-example-pdf.png" >&2
