"""The import contracts of pyproject.toml ([tool.importlinter], docs/ARCHITECTURE.md "Import
rules") hold today, and each one catches the violation it exists for: one bad import added to a copy
of the tree makes `lint-imports` fail naming that import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter")  # the dev extra; scripts/setup.sh installs it

ROOT = Path(__file__).resolve().parent.parent
LINT = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def lint_copy(tmp_path: Path, contract: str | None, module: str, line: str) -> subprocess.CompletedProcess[str]:
    """lint-imports (one contract, or all) on a copy of the tree whose `module` has `line` added."""
    for name in ("custody", "store"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    if module:
        path = tmp_path / (module.replace(".", "/") + ".py")
        path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    only = ["--contract", contract] if contract else []
    return subprocess.run([sys.executable, "-c", LINT, "--no-cache", *only],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


CONTRACTS = ["layers", "pure-core", "store-independent", "only-cli-calls", "no-sqlite-in-custody",
             "adapters-in-one-place"]


def test_the_tree_keeps_every_import_contract(tmp_path):
    result = lint_copy(tmp_path, None, "", "")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in result.stdout


VIOLATIONS = [
    # (contract, module given the bad import, the import, what lint-imports names)
    ("layers", "custody.ops.items", "import custody.package.layout",
     "custody.ops.items -> custody.package.layout"),
    ("layers", "custody.report.model", "import custody.package.layout",
     "custody.report.model -> custody.package.layout"),  # package | report: independent
    ("layers", "custody.metadata.clocks", "import custody.display",
     "custody.metadata.clocks -> custody.display"),
    ("pure-core", "custody.core.merkle", "import sqlite3", "custody.core.merkle -> sqlite3"),
    ("pure-core", "custody.core.entry", "import time", "custody.core.entry -> time"),
    ("pure-core", "custody.core.chain", "import pathlib", "custody.core.chain -> pathlib"),
    ("pure-core", "custody.core.proofs", "import store.local_objects",
     "custody.core.proofs -> store.local_objects"),
    ("pure-core", "custody.core.note", "import custody.ops.archive",
     "custody.core.note -> custody.ops.archive"),
    ("store-independent", "store.local_objects", "import custody.errors",
     "store.local_objects -> custody.errors"),
    ("only-cli-calls", "custody.report.model", "from custody.cli import progress",
     "custody.report.model -> custody.cli.progress"),
    ("no-sqlite-in-custody", "custody.ops.items", "import sqlite3", "custody.ops.items -> sqlite3"),
    ("no-sqlite-in-custody", "custody.package.export", "import sqlite_utils",
     "custody.package.export -> sqlite_utils"),
    ("adapters-in-one-place", "custody.ops.verify", "import store.sqlite_ledger",
     "custody.ops.verify -> store.sqlite_ledger"),
    ("adapters-in-one-place", "custody.search.indexer", "from store.index import LocalIndex",
     "custody.search.indexer -> store.index"),
    ("adapters-in-one-place", "custody.search.query", "import store.pg_index",
     "custody.search.query -> store.pg_index"),
]


@pytest.mark.parametrize(("contract", "module", "line", "named"), VIOLATIONS,
                         ids=[f"{c}:{m}" for c, m, _, _ in VIOLATIONS])
def test_each_import_contract_catches_its_violation(tmp_path, contract, module, line, named):
    result = lint_copy(tmp_path, contract, module, line)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "BROKEN" in result.stdout
    assert named in result.stdout
