#!/usr/bin/env bash
# CI's install check: the README's first command on a stock Debian Python that refuses pip (PEP 668).
# In a clean copy of the tree (tracked files only, no .venv), with no virtual environment active,
# run `PYTHON=/usr/bin/python3 bash scripts/demo.sh`: setup.sh must say it makes .venv, the demo
# must run to its end, and .venv/bin/custody must then work. As root, setup.sh is run once more
# as an unprivileged user in another copy. Takes 2-4 minutes (pip installs into fresh venvs).
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "check_install: $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }
started=$SECONDS

DEBIAN_PY=${DEBIAN_PYTHON:-/usr/bin/python3}
if [ ! -x "$DEBIAN_PY" ]; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  say "installing Debian's python3 and python3-venv"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null
fi
if [ -e "$("$DEBIAN_PY" -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')/EXTERNALLY-MANAGED" ]; then
  say "$DEBIAN_PY is externally managed (PEP 668): pip install into it is refused, as on a stock machine"
else
  say "note: $DEBIAN_PY is not marked externally managed; checking the .venv path all the same"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
copy_tree() {  # the tracked (and new, unignored) files, as a fresh clone would have them
  mkdir -p "$1"
  git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$1"
}

copy_tree "$work/custody"
say "running PYTHON=$DEBIAN_PY bash scripts/demo.sh in a clean copy (no virtual environment active)"
if ! (cd "$work/custody" && env -u VIRTUAL_ENV PYTHON="$DEBIAN_PY" DEMO_DIR="$work/demo" \
        bash scripts/demo.sh >"$work/demo.log" 2>&1); then
  tail -40 "$work/demo.log" >&2
  fail "the demo did not run on a stock Python"
fi
grep -q "setup: making the virtual environment $work/custody/.venv" "$work/demo.log" \
  || fail "setup.sh did not say it made .venv"
grep -q "demo: done. The archive is in $work/demo/archive" "$work/demo.log" \
  || fail "the demo did not say where its archive is"
grep -q "bin/activate" "$work/demo.log" || fail "the demo did not say how to get the custody command"
"$work/custody/.venv/bin/custody" --version >&2 || fail ".venv/bin/custody does not run"
CUSTODY_ARCHIVE="$work/demo/archive" "$work/custody/.venv/bin/custody" verify >&2 \
  || fail "custody verify on the demo archive failed"
say "the demo ran on $DEBIAN_PY through .venv"

if [ "$(id -u)" -eq 0 ] && command -v runuser >/dev/null 2>&1; then
  # A normal user: nothing to apt-get now (root installed it), so no sudo is needed; the venv and
  # pip's cache are the user's own.
  copy_tree "$work/user/custody"
  chown -R nobody "$work/user"
  chmod 755 "$work"
  say "running scripts/setup.sh as the unprivileged user 'nobody'"
  if ! runuser -u nobody -- env -u VIRTUAL_ENV HOME="$work/user" PYTHON="$DEBIAN_PY" \
        bash "$work/user/custody/scripts/setup.sh" >"$work/user.log" 2>&1; then
    tail -40 "$work/user.log" >&2
    fail "setup.sh failed for an unprivileged user"
  fi
  grep -q "setup: making the virtual environment" "$work/user.log" || fail "no .venv for the user"
  runuser -u nobody -- "$work/user/custody/.venv/bin/custody" --version >&2 \
    || fail "the user's .venv/bin/custody does not run"
  say "setup.sh worked for an unprivileged user"
fi
say "passed in $(( SECONDS - started )) s"
