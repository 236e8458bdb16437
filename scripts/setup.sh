#!/usr/bin/env bash
# Install what custody needs on a fresh Debian/Ubuntu machine, as root or as a user with sudo:
# libmagic, ExifTool, the report fonts and tmux (system packages, apt-get), then custody itself with
# its test extras into a virtual environment: the active one, else ./.venv, made here from $PYTHON
# (default python3). Safe to run again; installs only what is missing. Says what it does on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "setup: $*" >&2; }
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
apt_install() {
  say "installing $* (apt-get${SUDO:+, with sudo})"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

need=()
command -v exiftool >/dev/null 2>&1 || need+=(libimage-exiftool-perl)
# The library cache is read once: `ldconfig -p | grep -q` fails at random under pipefail (grep -q
# exits at the first match and ldconfig dies of SIGPIPE), which once asked a user without sudo to
# install what was there.
libs=$(ldconfig -p 2>/dev/null || true)
grep -q 'libmagic\.so\.1' <<<"$libs" || need+=(libmagic1)
# Reports: WeasyPrint needs Pango; Noto Naskh Arabic shapes Arabic names; pdftotext reads PDFs back.
grep -q 'libpangoft2-1\.0\.so\.0' <<<"$libs" || need+=(libpango-1.0-0 libpangoft2-1.0-0)
[ -e /usr/share/fonts/truetype/noto/NotoNaskhArabic-Regular.ttf ] || need+=(fonts-noto-core)
[ -d /usr/share/fonts/truetype/dejavu ] || need+=(fonts-dejavu-core)
command -v pdftotext >/dev/null 2>&1 || need+=(poppler-utils)
command -v tmux >/dev/null 2>&1 || need+=(tmux)  # the terminal tests drive custody in tmux
# Sidecars: gpgv checks OpenPGP signatures found beside a file, gpg reads the key beside them.
command -v gpgv >/dev/null 2>&1 || need+=(gpgv)
command -v gpg >/dev/null 2>&1 || need+=(gnupg)
# Video: ffmpeg trims, transcodes and takes stills (custody derive) and a report's poster frames.
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
# The service benchmark's baseline: plain HTTP PUTs with curl (benchmarks/service.py).
command -v curl >/dev/null 2>&1 || need+=(curl)
[ -x /usr/bin/chromium ] || need+=(chromium)  # the web tests' headless browser (Playwright, docs/WEB.md)
BASE=${PYTHON:-python3}
# A stock machine may lack Python itself, or Debian's venv module (package python3-venv).
if ! command -v "$BASE" >/dev/null 2>&1; then
  [ "$BASE" = python3 ] || { say "no Python at PYTHON=$BASE"; exit 3; }
  need+=(python3 python3-venv)
fi
if [ "${#need[@]}" -gt 0 ]; then apt_install "${need[@]}"; fi

# shellcheck source=scripts/python.sh
. scripts/python.sh
if [ -n "${VIRTUAL_ENV:-}" ] && [ "$VENV_DIR" = "$VIRTUAL_ENV" ]; then
  say "using the active virtual environment $VIRTUAL_ENV"
elif [ ! -x "$PY" ]; then
  if ! "$BASE" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    version=$("$BASE" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    apt_install "python$version-venv"
  fi
  say "making the virtual environment $VENV_DIR from $("$BASE" -c 'import sys; print(sys.executable)') (custody is installed there, not into the system's Python)"
  "$BASE" -m venv "$VENV_DIR"
else
  say "using the virtual environment $VENV_DIR"
fi

if ! "$PY" -c 'import custody.cli.app, pytest, xdist, hypothesis, ruff, mypy, importlinter, nacl, rfc3161_client, weasyprint, jinja2, PIL, bagit' >/dev/null 2>&1 \
   || [ "$("$PY" -c 'import custody,os;print(os.path.dirname(os.path.dirname(custody.__file__)))' 2>/dev/null)" != "$PWD" ]; then
  say "pip install -e .[test,dev] into $VENV_DIR (about 1-2 minutes the first time; progress below)"
  log=$(mktemp)
  # One line per package as it is fetched, so a slow network shows; the full log only on failure.
  if ! PYTHONUNBUFFERED=1 "$PY" -m pip install --disable-pip-version-check -e '.[test,dev]' 2>&1 | tee "$log" \
       | grep --line-buffered -E '^(Collecting|Installing collected|Successfully installed)' \
       | sed -u -E 's/^(.{0,100}).*/setup:   \1/' >&2 \
     || ! grep -q '^Successfully installed' "$log"; then
    cat "$log" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
fi
"$PY" -c 'import custody.cli.app' # fail here, clearly, if the install did not work
if [ -z "${VIRTUAL_ENV:-}" ]; then
  say "ready. To get the custody command: . $VENV_DIR/bin/activate (or run $VENV_DIR/bin/custody; or: pipx install .)"
fi
