#!/usr/bin/env bash
# Install what custody needs on a fresh Debian/Ubuntu machine: libmagic and ExifTool (system),
# then custody itself with its test extras (pip). Safe to run again; installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v exiftool >/dev/null 2>&1 || need+=(libimage-exiftool-perl)
ldconfig -p 2>/dev/null | grep -q 'libmagic\.so\.1' || need+=(libmagic1)
# Reports: WeasyPrint needs Pango; Noto Naskh Arabic shapes Arabic names; pdftotext reads PDFs back.
ldconfig -p 2>/dev/null | grep -q 'libpangoft2-1\.0\.so\.0' || need+=(libpango-1.0-0 libpangoft2-1.0-0)
[ -e /usr/share/fonts/truetype/noto/NotoNaskhArabic-Regular.ttf ] || need+=(fonts-noto-core)
[ -d /usr/share/fonts/truetype/dejavu ] || need+=(fonts-dejavu-core)
command -v pdftotext >/dev/null 2>&1 || need+=(poppler-utils)
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  echo "setup: installing ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if ! "$PY" -c 'import custody.cli, pytest, hypothesis, ruff, mypy, nacl, rfc3161_client, weasyprint, jinja2, PIL, bagit' >/dev/null 2>&1 \
   || [ "$("$PY" -c 'import custody,os;print(os.path.dirname(os.path.dirname(custody.__file__)))' 2>/dev/null)" != "$PWD" ]; then
  echo "setup: pip install -e .[test,dev]" >&2
  log=$(mktemp)
  if ! "$PY" -m pip install -q --disable-pip-version-check -e '.[test,dev]' >"$log" 2>&1; then
    cat "$log" >&2
    exit 1
  fi
  rm -f "$log"
fi
"$PY" -c 'import custody.cli' # fail here, clearly, if the install did not work
