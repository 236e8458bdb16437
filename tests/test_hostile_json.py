"""Deeply nested JSON anywhere custody reads it (tracks, proof bundles, witness state) is a named
one-line error, never a RecursionError (issue 10, item 14, beyond package.json)."""

from __future__ import annotations

import pytest

from tests.conftest import one_line_error

DEEP = "[" * 200_000 + "]" * 200_000


@pytest.fixture
def deep(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text(DEEP)
    return path


def test_a_deeply_nested_geojson_track_is_a_named_error(cli_archive, deep):
    for fmt in ("geojson", "geojsonseq"):
        result = cli_archive("crossref", deep, "--format", fmt, "--km", "1", "--minutes", "5")
        assert result.code not in (0, 1), result.stdout
        assert "nested more than 128 levels" in one_line_error(result)


def test_a_deeply_nested_proof_bundle_is_a_named_error(cli_archive, deep, tmp_path):
    vkey = cli_archive("checkpoint", "--json", check=True).json()["verifier_key"]
    result = cli_archive("verify-proof", deep, "--archive-key", vkey)
    assert result.code not in (0,)
    assert "nested more than 128 levels" in one_line_error(result)
    cosign = cli_archive("witness", "cosign", deep, "--state", tmp_path / "state.json",
                         "--proof", deep)
    assert cosign.code == 2
    assert "nested more than 128 levels" in one_line_error(cosign)


def test_a_deeply_nested_witness_state_is_a_named_error(cli_archive, tmp_path):
    cp = tmp_path / "cp.txt"
    cli_archive("checkpoint", "-o", cp, check=True)
    vkey = cli_archive("checkpoint", "--json", check=True).json()["verifier_key"]
    state = tmp_path / "state.json"
    state.write_text(DEEP)
    result = cli_archive("witness", "cosign", cp, "--state", state, "--archive-key", vkey)
    assert result.code not in (0, 1)
    assert "nested more than 128 levels" in one_line_error(result)


def test_a_witness_state_that_is_not_an_object_is_a_named_error(cli_archive, tmp_path):
    cp = tmp_path / "cp.txt"
    cli_archive("checkpoint", "-o", cp, check=True)
    vkey = cli_archive("checkpoint", "--json", check=True).json()["verifier_key"]
    state = tmp_path / "state.json"
    state.write_text("[1, 2]")  # valid JSON, but no state file: once an AttributeError traceback
    result = cli_archive("witness", "cosign", cp, "--state", state, "--archive-key", vkey)
    assert result.code == 3
    assert "is not a version" in one_line_error(result)
