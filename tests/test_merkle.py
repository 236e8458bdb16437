"""RFC 9162 Merkle tree (custody.core.merkle): published vectors, a naive reference, properties, cost.

Vectors: tests/vectors/merkle (github.com/transparency-dev/merkle testdata/, commit 417fb0c,
Apache-2.0) and the known answers of that project's proof/verify_test.go (RFC 6962 test leaves).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from custody.core import merkle
from custody.core.merkle import (
    EMPTY_ROOT,
    ProofError,
    TreeBuilder,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    nodes_after_append,
    root_from_inclusion_proof,
    root_hash,
    verify_consistency,
    verify_inclusion,
)
from custody.errors import EXIT_PROBLEM, CustodyError

VECTORS = Path(__file__).parent / "vectors" / "merkle"


# ---------------------------------------------------------------------------------------------
# A naive reference, straight from the RFC 9162 §2.1 text (recursive, O(n) per call)


def largest_power_of_two_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(leaves: list[bytes]) -> bytes:
    """MTH(D[n]) of §2.1.1, over raw entries."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = largest_power_of_two_below(len(leaves))
    return hashlib.sha256(b"\x01" + ref_mth(leaves[:k]) + ref_mth(leaves[k:])).digest()


def ref_path(m: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of §2.1.3.1."""
    n = len(leaves)
    if n == 1:
        return []
    k = largest_power_of_two_below(n)
    if m < k:
        return ref_path(m, leaves[:k]) + [ref_mth(leaves[k:])]
    return ref_path(m - k, leaves[k:]) + [ref_mth(leaves[:k])]


def ref_subproof(m: int, leaves: list[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) of §2.1.4.1."""
    n = len(leaves)
    if m == n:
        return [] if b else [ref_mth(leaves)]
    k = largest_power_of_two_below(n)
    if m <= k:
        return ref_subproof(m, leaves[:k], b) + [ref_mth(leaves[k:])]
    return ref_subproof(m - k, leaves[k:], False) + [ref_mth(leaves[:k])]


def ref_proof(m: int, leaves: list[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) of §2.1.4.1."""
    return ref_subproof(m, leaves, True)


def path_shape(m: int, n: int) -> tuple[bool, ...]:
    """Which side each PATH element sits on, leaf upwards (True: left sibling). The RFC verifier's
    computation depends on (index, size) only through this shape."""
    if n == 1:
        return ()
    k = largest_power_of_two_below(n)
    if m < k:
        return path_shape(m, k) + (False,)
    return path_shape(m - k, n - k) + (True,)


def proof_shape(m: int, n: int, b: bool = True) -> tuple[str, ...]:
    """The same for PROOF: 'seed' when the old root is not implied, then each element's side."""
    if m == n:
        return () if b else ("seed",)
    k = largest_power_of_two_below(n)
    if m <= k:
        return proof_shape(m, k, b) + ("right",)
    return proof_shape(m - k, n - k, False) + ("left",)


# ---------------------------------------------------------------------------------------------
# Stores behind get_node


def entry(i: int) -> bytes:
    return b"custody test entry %d" % i


class Store:
    """A dict of complete nodes, filled with nodes_after_append, as the ledger's table will be."""

    def __init__(self, size: int) -> None:
        self.nodes: dict[tuple[int, int], bytes] = {}
        for i in range(size):
            for level, index, digest in nodes_after_append(i, leaf_hash(entry(i)), self.get):
                self.nodes[(level, index)] = digest
        self.size = size

    def get(self, level: int, index: int) -> bytes:
        return self.nodes[(level, index)]

    def view(self, size: int) -> Callable[[int, int], bytes]:
        """get_node for the tree of `size`: it must never ask for a node outside that tree."""

        def get_node(level: int, index: int) -> bytes:
            assert (index + 1) << level <= size, f"node ({level}, {index}) is outside size {size}"
            return self.nodes[(level, index)]

        return get_node


SMALL = 80
STORE = Store(4096)
ENTRIES = [entry(i) for i in range(SMALL)]


class Counter:
    """A synthetic get_node over a real tree whose leaves are all equal (so any node is computable
    in O(1) at any size), counting calls and checking each node exists in the tree."""

    LEVEL_HASHES: list[bytes] = []

    def __init__(self, size: int) -> None:
        if not self.LEVEL_HASHES:
            digest = leaf_hash(b"same")
            for _ in range(65):
                self.LEVEL_HASHES.append(digest)
                digest = node_hash(digest, digest)
        self.size = size
        self.calls = 0

    def __call__(self, level: int, index: int) -> bytes:
        assert (index + 1) << level <= self.size, f"node ({level}, {index}) outside {self.size}"
        self.calls += 1
        return self.LEVEL_HASHES[level]


def ceil_log2(n: int) -> int:
    return (n - 1).bit_length()


# ---------------------------------------------------------------------------------------------
# Published vectors


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value) if value else b""


def _vector_files(kind: str) -> list[Path]:
    files = sorted((VECTORS / kind).rglob("*.json"))
    assert files, f"no {kind} vectors found under {VECTORS}"
    return files


def _vector_id(path: Path) -> str:
    return str(path.relative_to(VECTORS))


@pytest.mark.parametrize("path", _vector_files("inclusion"), ids=_vector_id)
def test_inclusion_vector(path: Path) -> None:
    v = json.loads(path.read_text())
    args = (
        _b64(v["leafHash"]),
        v["leafIdx"],
        v["treeSize"],
        [_b64(p) for p in v["proof"] or []],
        _b64(v["root"]),
    )
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", _vector_files("consistency"), ids=_vector_id)
def test_consistency_vector(path: Path) -> None:
    v = json.loads(path.read_text())
    args = (
        v["size1"],
        v["size2"],
        [_b64(p) for p in v["proof"] or []],
        _b64(v["root1"]),
        _b64(v["root2"]),
    )
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_vector_counts() -> None:
    """The whole corpus is present (a missing directory would silently shrink the tests)."""
    assert len(_vector_files("inclusion")) == 98
    assert len(_vector_files("consistency")) == 98


# The RFC 6962 test leaves and the known answers of transparency-dev/merkle proof/verify_test.go.
RFC6962_LEAVES = [
    bytes.fromhex(h)
    for h in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
              "606162636465666768696a6b6c6d6e6f"]
]  # fmt: skip
RFC6962_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
RFC6962_INCLUSION = [  # (leaf index, tree size, proof)
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]  # fmt: skip
RFC6962_CONSISTENCY = [  # (size1, size2, proof)
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]  # fmt: skip


def _rfc6962_store() -> dict[tuple[int, int], bytes]:
    nodes: dict[tuple[int, int], bytes] = {}
    for i, data in enumerate(RFC6962_LEAVES):
        for level, index, digest in nodes_after_append(
            i, leaf_hash(data), lambda lv, ix: nodes[(lv, ix)]
        ):
            nodes[(level, index)] = digest
    return nodes


def test_rfc6962_known_roots() -> None:
    nodes = _rfc6962_store()
    builder = TreeBuilder()
    for size, expected in enumerate(RFC6962_ROOTS, start=1):
        builder.append(leaf_hash(RFC6962_LEAVES[size - 1]))
        assert root_hash(size, lambda lv, ix: nodes[(lv, ix)]).hex() == expected
        assert builder.root().hex() == expected
        assert ref_mth(RFC6962_LEAVES[:size]).hex() == expected


@pytest.mark.parametrize(("index", "size", "proof"), RFC6962_INCLUSION)
def test_rfc6962_known_inclusion_proofs(index: int, size: int, proof: list[str]) -> None:
    nodes = _rfc6962_store()
    assert [p.hex() for p in inclusion_proof(index, size, lambda lv, ix: nodes[(lv, ix)])] == proof
    verify_inclusion(
        leaf_hash(RFC6962_LEAVES[index]),
        index,
        size,
        [bytes.fromhex(p) for p in proof],
        bytes.fromhex(RFC6962_ROOTS[size - 1]),
    )


@pytest.mark.parametrize(("size1", "size2", "proof"), RFC6962_CONSISTENCY)
def test_rfc6962_known_consistency_proofs(size1: int, size2: int, proof: list[str]) -> None:
    nodes = _rfc6962_store()
    got = consistency_proof(size1, size2, lambda lv, ix: nodes[(lv, ix)])
    assert [p.hex() for p in got] == proof
    verify_consistency(
        size1,
        size2,
        [bytes.fromhex(p) for p in proof],
        bytes.fromhex(RFC6962_ROOTS[size1 - 1]),
        bytes.fromhex(RFC6962_ROOTS[size2 - 1]),
    )


def test_happy_path_vectors_are_rfc6962_trees() -> None:
    """Every accepted vector root is a root of the RFC 6962 test tree (the corpus is genuine)."""
    known = {bytes.fromhex(r) for r in RFC6962_ROOTS}
    for path in _vector_files("inclusion") + _vector_files("consistency"):
        v = json.loads(path.read_text())
        if v["wantErr"] or "additional" in path.parts or "single-entry" in path.parts:
            continue
        roots = [v["root"]] if "root" in v else [v["root1"], v["root2"]]
        assert {_b64(r) for r in roots} <= known, path


# ---------------------------------------------------------------------------------------------
# Cross-check against the naive reference, every size up to SMALL, every index and old size


def test_empty_tree() -> None:
    assert EMPTY_ROOT == hashlib.sha256(b"").digest() == ref_mth([])
    assert root_hash(0, STORE.view(0)) == EMPTY_ROOT
    assert TreeBuilder().root() == EMPTY_ROOT


def test_hash_domain_separation() -> None:
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert (
        node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    )


@pytest.mark.parametrize("size", range(1, SMALL + 1))
def test_matches_reference(size: int) -> None:
    leaves = ENTRIES[:size]
    get_node = STORE.view(size)
    root = ref_mth(leaves)
    assert root_hash(size, get_node) == root
    for index in range(size):
        proof = inclusion_proof(index, size, get_node)
        assert proof == ref_path(index, leaves)
        assert root_from_inclusion_proof(leaf_hash(leaves[index]), index, size, proof) == root
        verify_inclusion(leaf_hash(leaves[index]), index, size, proof, root)
    for old in range(1, size + 1):
        proof = consistency_proof(old, size, get_node)
        assert proof == ref_proof(old, leaves)
        verify_consistency(old, size, proof, ref_mth(leaves[:old]), root)


def test_stored_nodes_are_subtree_hashes() -> None:
    """nodes_after_append and TreeBuilder.append make the same nodes, each the MTH of its range."""
    builder = TreeBuilder()
    for i in range(SMALL):
        created = builder.append(leaf_hash(ENTRIES[i]))
        assert created == nodes_after_append(i, leaf_hash(ENTRIES[i]), STORE.get)
        assert [(lv, ix) for lv, ix, _ in created] == [(lv, i >> lv) for lv in range(len(created))]
        for level, index, digest in created:
            assert digest == ref_mth(ENTRIES[index << level : (index + 1) << level])
        assert builder.size == i + 1
        assert builder.root() == ref_mth(ENTRIES[: i + 1])


@pytest.mark.slow
def test_tree_builder_million_leaves() -> None:
    """A full re-hash of a million-entry log is one O(n) pass with O(log n) state (a few seconds);
    checked against a different algorithm (level by level, the odd node promoted)."""
    size = 1_000_003
    level = [leaf_hash(i.to_bytes(8, "big")) for i in range(size)]
    builder = TreeBuilder()
    builder.extend(level)
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        level = paired + ([level[-1]] if len(level) % 2 else [])
    assert builder.size == size
    assert builder.root() == level[0]


# ---------------------------------------------------------------------------------------------
# Properties over larger trees: honest proofs verify; any alteration fails


def _flip(proof: list[bytes], element: int, bit: int) -> list[bytes]:
    altered = list(proof)
    data = bytearray(altered[element])
    data[bit // 8] ^= 1 << (bit % 8)
    altered[element] = bytes(data)
    return altered


def _fails(check: Callable[..., None], *args: object) -> bool:
    try:
        check(*args)
    except ProofError:
        return True
    return False


sizes = st.integers(min_value=1, max_value=STORE.size)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), size=sizes)
def test_inclusion_property(data: st.DataObject, size: int) -> None:
    index = data.draw(st.integers(min_value=0, max_value=size - 1), label="index")
    get_node = STORE.view(size)
    root = root_hash(size, get_node)
    leaf = leaf_hash(entry(index))
    proof = inclusion_proof(index, size, get_node)
    verify_inclusion(leaf, index, size, proof, root)

    for element in range(len(proof)):
        bit = data.draw(st.integers(min_value=0, max_value=255), label=f"bit in proof[{element}]")
        assert _fails(verify_inclusion, leaf, index, size, _flip(proof, element, bit), root)
    bit = data.draw(st.integers(min_value=0, max_value=255), label="bit in leaf")
    assert _fails(verify_inclusion, _flip([leaf], 0, bit)[0], index, size, proof, root)
    assert _fails(verify_inclusion, leaf, index, size, proof, _flip([root], 0, bit)[0])
    assert _fails(verify_inclusion, leaf, index, size, proof, EMPTY_ROOT)
    if proof:
        assert _fails(verify_inclusion, leaf, index, size, proof[:-1], root)
        assert _fails(verify_inclusion, leaf, index, size, proof[1:], root)
    assert _fails(verify_inclusion, leaf, index, size, [*proof, root], root)
    assert _fails(verify_inclusion, leaf, index, size, [root, *proof], root)
    assert _fails(verify_inclusion, leaf, index, size, [*proof, b""], root)

    other_index = data.draw(st.integers(min_value=0, max_value=2 * size), label="other index")
    for wrong in {index - 1, index + 1, index ^ 1, index ^ 2, other_index} - {index}:
        assert _fails(verify_inclusion, leaf, wrong, size, proof, root), wrong

    # A size enters the check only through the proof's shape: a wrong size fails exactly when it
    # changes the shape (the root, which commits to the size, is what binds them).
    other_size = data.draw(st.integers(min_value=0, max_value=2 * STORE.size), label="other size")
    for wrong in {size - 1, size + 1, size * 2, size // 2, other_size} - {size}:
        same_shape = wrong > index and path_shape(index, wrong) == path_shape(index, size)
        assert _fails(verify_inclusion, leaf, index, wrong, proof, root) != same_shape


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), size2=st.integers(min_value=2, max_value=STORE.size))
def test_consistency_property(data: st.DataObject, size2: int) -> None:
    size1 = data.draw(st.integers(min_value=1, max_value=size2 - 1), label="size1")
    root1 = root_hash(size1, STORE.view(size1))
    root2 = root_hash(size2, STORE.view(size2))
    proof = consistency_proof(size1, size2, STORE.view(size2))
    verify_consistency(size1, size2, proof, root1, root2)

    def check(s1: int, s2: int, p: list[bytes], r1: bytes, r2: bytes) -> bool:
        return _fails(verify_consistency, s1, s2, p, r1, r2)

    for element in range(len(proof)):
        bit = data.draw(st.integers(min_value=0, max_value=255), label=f"bit in proof[{element}]")
        assert check(size1, size2, _flip(proof, element, bit), root1, root2)
    bit = data.draw(st.integers(min_value=0, max_value=255), label="bit in a root")
    assert check(size1, size2, proof, _flip([root1], 0, bit)[0], root2)
    assert check(size1, size2, proof, root1, _flip([root2], 0, bit)[0])
    assert check(size1, size2, proof, root2, root1)
    assert check(size1, size2, [], root1, root2)
    assert check(size1, size2, proof[:-1], root1, root2)
    assert check(size1, size2, proof[1:], root1, root2)
    for extra in (root1, root2, proof[0], b""):
        assert check(size1, size2, [*proof, extra], root1, root2)
        assert check(size1, size2, [extra, *proof], root1, root2)

    other = data.draw(st.integers(min_value=0, max_value=2 * STORE.size), label="other size")
    shape = proof_shape(size1, size2)
    for wrong in {size1 - 1, size1 + 1, size1 ^ 2, other} - {size1}:
        same = 0 < wrong < size2 and proof_shape(wrong, size2) == shape
        assert check(wrong, size2, proof, root1, root2) != same, wrong
    for wrong in {size2 - 1, size2 + 1, size2 * 2, size2 // 2, other} - {size2}:
        same = 0 < size1 < wrong and proof_shape(size1, wrong) == shape
        assert check(size1, wrong, proof, root1, root2) != same, wrong


def test_size_binds_only_through_root() -> None:
    """The documented limit: leaf 0's proof in the 3-leaf tree also 'verifies' as a 4-leaf tree
    against the 3-leaf root, since both shapes are (right, right). Callers take (size, root)
    together from one signed checkpoint."""
    get_node = STORE.view(3)
    proof = inclusion_proof(0, 3, get_node)
    root3 = root_hash(3, get_node)
    verify_inclusion(leaf_hash(entry(0)), 0, 4, proof, root3)
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(entry(0)), 0, 4, proof, root_hash(4, STORE.view(4)))


# ---------------------------------------------------------------------------------------------
# Edge cases and errors


def test_equal_sizes_and_empty_tree() -> None:
    root = root_hash(5, STORE.view(5))
    verify_consistency(5, 5, [], root, root)
    assert consistency_proof(5, 5, STORE.view(5)) == []
    verify_consistency(1, 1, [], b"short", b"short")  # equal sizes: no length check on roots
    with pytest.raises(ProofError, match="different roots"):
        verify_consistency(5, 5, [], root, EMPTY_ROOT)
    with pytest.raises(ProofError, match="empty consistency proof"):
        verify_consistency(5, 5, [root], root, root)
    with pytest.raises(ProofError, match="empty tree"):
        verify_consistency(0, 5, [], EMPTY_ROOT, root)
    with pytest.raises(ProofError, match="empty tree"):
        verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)
    with pytest.raises(ProofError, match="smaller"):
        verify_consistency(6, 5, [], root, root)


def test_wrong_lengths_rejected() -> None:
    get_node = STORE.view(8)
    root = root_hash(8, get_node)
    leaf = leaf_hash(entry(3))
    proof = inclusion_proof(3, 8, get_node)
    with pytest.raises(ProofError, match="leaf hash is 31 bytes"):
        verify_inclusion(leaf[:31], 3, 8, proof, root)
    with pytest.raises(ProofError, match="proof hash 1 is 33 bytes"):
        verify_inclusion(leaf, 3, 8, [proof[0], proof[1] + b"\x00", proof[2]], root)
    with pytest.raises(ProofError, match="beyond"):
        verify_inclusion(leaf, 8, 8, proof, root)
    with pytest.raises(ProofError, match="inclusion proof is too long"):
        verify_inclusion(leaf, 3, 8, [*proof, proof[0]], root)
    with pytest.raises(ProofError, match="inclusion proof is too short"):
        verify_inclusion(leaf, 3, 8, proof[:-1], root)
    cproof = consistency_proof(3, 8, get_node)
    with pytest.raises(ProofError, match="consistency proof is too long"):
        verify_consistency(3, 8, [*cproof, root], root_hash(3, get_node), root)
    with pytest.raises(ProofError, match="consistency proof is too short"):
        verify_consistency(3, 8, cproof[:-1], root_hash(3, get_node), root)
    with pytest.raises(ProofError, match="non-negative"):
        verify_inclusion(leaf, -1, 8, proof, root)
    with pytest.raises(ProofError, match="first root is 31 bytes"):
        verify_consistency(3, 8, cproof, root_hash(3, get_node)[:31], root)


def test_generation_arguments_checked() -> None:
    get_node = STORE.view(8)
    with pytest.raises(ValueError, match="not in a tree"):
        inclusion_proof(8, 8, get_node)
    with pytest.raises(ValueError, match="0 < old size"):
        consistency_proof(0, 8, get_node)
    with pytest.raises(ValueError, match="0 < old size"):
        consistency_proof(9, 8, get_node)
    with pytest.raises(ValueError, match="non-negative"):
        root_hash(True, get_node)
    with pytest.raises(ValueError, match="32"):
        nodes_after_append(0, b"short", get_node)
    with pytest.raises(ValueError, match="32"):
        TreeBuilder().append(b"short")


def test_proof_error_is_a_custody_verification_error() -> None:
    with pytest.raises(ProofError) as caught:
        verify_consistency(2, 1, [], b"", b"")
    assert isinstance(caught.value, CustodyError)
    assert isinstance(caught.value, ValueError)
    assert caught.value.exit_code == EXIT_PROBLEM
    assert "\n" not in caught.value.message


# ---------------------------------------------------------------------------------------------
# Cost: O(log n) get_node calls, whatever the size


def test_append_cost_is_trailing_ones() -> None:
    for size in (0, 1, 2, 3, 7, 8, 1023, 1024, 999_999, 2**20 - 1):
        counter = Counter(size)
        created = nodes_after_append(size, counter.LEVEL_HASHES[0], counter)
        trailing_ones = (size ^ (size + 1)).bit_length() - 1
        assert counter.calls == trailing_ones == len(created) - 1


def test_cost_exhaustive_small() -> None:
    """Every index and every old size of every tree up to 256 leaves."""
    for size in range(1, 257):
        bound = 2 * ceil_log2(size)
        counter = Counter(size)
        root_hash(size, counter)
        assert counter.calls == bin(size).count("1")
        for index in range(size):
            counter.calls = 0
            inclusion_proof(index, size, counter)
            assert counter.calls <= bound, (index, size)
        for old in range(1, size + 1):
            counter.calls = 0
            consistency_proof(old, size, counter)
            assert counter.calls <= bound, (old, size)


LARGE = [2**20 - 1, 2**20, 2**20 + 1, 999_999, 1_000_000, 1_000_001, 3 * 2**18 + 5]


@pytest.mark.parametrize("size", LARGE)
def test_cost_large_edges(size: int) -> None:
    """Proofs in a million-leaf log read at most 2·⌈log2 n⌉ nodes and verify for real."""
    counter = Counter(size)
    root = root_hash(size, counter)
    bound = 2 * ceil_log2(size)
    for index in {0, 1, size // 2, size - 2, size - 1, (size - 1) & ~0xFF}:
        counter.calls = 0
        proof = inclusion_proof(index, size, counter)
        assert counter.calls <= bound
        verify_inclusion(Counter.LEVEL_HASHES[0], index, size, proof, root)
    for old in {1, 2, 3, size // 2, size // 2 + 1, size - 1, size}:
        counter.calls = 0
        proof = consistency_proof(old, size, counter)
        assert counter.calls <= bound
        verify_consistency(old, size, proof, root_hash(old, Counter(old)), root)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), size=st.integers(min_value=1, max_value=10**6))
def test_cost_random_large(data: st.DataObject, size: int) -> None:
    counter = Counter(size)
    root = root_hash(size, counter)
    assert counter.calls <= ceil_log2(size) + 1
    bound = 2 * ceil_log2(size)
    index = data.draw(st.integers(min_value=0, max_value=size - 1), label="index")
    counter.calls = 0
    proof = inclusion_proof(index, size, counter)
    assert counter.calls <= bound
    verify_inclusion(Counter.LEVEL_HASHES[0], index, size, proof, root)
    old = data.draw(st.integers(min_value=1, max_value=size), label="old size")
    counter.calls = 0
    proof = consistency_proof(old, size, counter)
    assert counter.calls <= bound
    verify_consistency(old, size, proof, root_hash(old, Counter(old)), root)


def test_module_is_pure() -> None:
    """No I/O, clock or randomness: the module imports only hashlib and typing helpers."""
    source = Path(merkle.__file__).read_text()
    for banned in ("import os", "import time", "import random", "open(", "cryptography", "sqlite"):
        assert banned not in source


def test_the_nodes_a_proof_names_in_advance_are_exactly_the_nodes_it_reads() -> None:
    """inclusion_proof_nodes / consistency_proof_nodes let a remote store send a proof's nodes in
    one request: a proof built only from the nodes named gives the same path, and asks nothing
    else (the fallback would fail the test)."""
    store = Store(70)

    def nothing_else(level: int, index: int) -> bytes:
        raise AssertionError(f"node ({level}, {index}) was read but not named in advance")

    for size in range(1, 71):
        for index in range(size):
            named = merkle.inclusion_proof_nodes(index, size)
            found = {k: store.nodes[k] for k in named}
            assert merkle.inclusion_proof(index, size, merkle.prefetched(found, nothing_else)) \
                == merkle.inclusion_proof(index, size, store.view(size))
        for old in range(1, size + 1):
            named = merkle.consistency_proof_nodes(old, size)
            found = {k: store.nodes[k] for k in named}
            assert merkle.consistency_proof(old, size, merkle.prefetched(found, nothing_else)) \
                == merkle.consistency_proof(old, size, store.view(size))
    # a node the store did not return is asked of the fallback, whose error stands
    with pytest.raises(AssertionError, match="was read but not named"):
        merkle.inclusion_proof(3, 8, merkle.prefetched({}, nothing_else))


@pytest.mark.parametrize("size", [1, 2, 7, 13, 32, SMALL])
def test_inclusion_proofs_of_many_leaves_equal_each_proof_and_share_their_nodes(size: int) -> None:
    """An export proves every entry it carries against one tree: the batch gives each proof
    exactly as inclusion_proof does (the RFC reference path) and asks for each node once."""
    asked: list[tuple[int, int]] = []
    get_node = STORE.view(size)

    def get_nodes(keys: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        asked.extend(keys)
        return {key: get_node(*key) for key in keys if key != (0, 0)}  # one the store lacks

    indices = list(range(size))
    proofs = merkle.inclusion_proofs(indices, size, get_nodes, get_node)
    assert proofs == [ref_path(i, ENTRIES[:size]) for i in indices]
    assert len(asked) == len(set(asked))  # no node fetched twice...
    assert set(asked) == {k for i in indices for k in merkle.inclusion_proof_nodes(i, size)}
