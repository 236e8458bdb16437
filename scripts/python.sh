# Sourced by setup.sh, test.sh and demo.sh (from the repository's root): which Python custody runs
# under. An active virtual environment ($VIRTUAL_ENV) is used as it is; otherwise the project's own
# virtual environment .venv, which setup.sh makes from $PYTHON (default python3). A system Python
# such as Debian's refuses `pip install` (PEP 668), so custody is never installed into one.
VENV_DIR=${CUSTODY_VENV:-$PWD/.venv}
if [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
  PY="$VIRTUAL_ENV/bin/python"
  VENV_DIR="$VIRTUAL_ENV"
else
  PY="$VENV_DIR/bin/python"
fi
