"""RFC 9162 §2.1 Merkle tree: hashing, inclusion and consistency proofs, and their verifiers.

Pure functions over node hashes; storage stays behind a `get_node(level, index)` callback.

Terminology. Leaves are numbered from 0. The node (level, index) is the *complete* (perfect) subtree
that covers leaves [index·2^level, (index+1)·2^level); level 0 is a leaf hash. A tree of size n
stores only complete nodes; the hash of any other (right-edge, "ephemeral") subtree is computed on
demand from its decomposition into complete nodes, so every proof costs O(log n) `get_node` calls.

Verification follows RFC 9162 §2.1.3.2 and §2.1.4.2 to the letter, with the edge cases enforced by
github.com/transparency-dev/merkle's Go verifier (and its published test vectors): every proof hash
and the leaf hash must be 32 bytes; a consistency proof from an empty tree (size1 == 0) is
rejected; two trees of equal size are consistent exactly when their roots are equal bytes and the
proof is empty (roots are not length-checked in that case).

Note that a proof binds a tree size only through the root: verify (size, root) pairs that come
together from one signed checkpoint, never a size from one source and a root from another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

from custody.errors import EXIT_PROBLEM, CustodyError

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"  # RFC 9162 §2.1.1 domain separation: leaf hash
NODE_PREFIX = b"\x01"  # and interior node hash
EMPTY_ROOT = hashlib.sha256(b"").digest()

GetNode = Callable[[int, int], bytes]
"""`get_node(level, index)` returns the stored hash of a complete node; only ever asked for nodes
that exist (fully inside the tree whose proof or root is being computed)."""

NodeEntry = tuple[int, int, bytes]
"""(level, index, hash) of one complete node."""


class ProofError(CustodyError, ValueError):
    """A Merkle proof does not verify; the message says why in one line."""

    exit_code = EXIT_PROBLEM


def leaf_hash(entry: bytes) -> bytes:
    """SHA-256(0x00 || entry): the hash of one log entry (RFC 9162 §2.1.1)."""
    return hashlib.sha256(LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right): the hash of an interior node (RFC 9162 §2.1.1)."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


# ---------------------------------------------------------------------------------------------
# Building and reading a stored tree


def nodes_after_append(size: int, leaf: bytes, get_node: GetNode) -> list[NodeEntry]:
    """The complete nodes created when the leaf hash `leaf` becomes leaf number `size` (0-based).

    The first entry is (0, size, leaf) itself, then one entry per complete node the new leaf
    closes, bottom-up. Reads one existing node (the left sibling) per new interior node.
    """
    _check_size(size, "size")
    _check_hash(leaf, "leaf hash")
    created: list[NodeEntry] = [(0, size, leaf)]
    level, index, current = 0, size, leaf
    while index & 1:
        current = node_hash(get_node(level, index - 1), current)
        level, index = level + 1, index >> 1
        created.append((level, index, current))
    return created


def root_hash(size: int, get_node: GetNode) -> bytes:
    """MTH of the first `size` leaves (EMPTY_ROOT for 0), from popcount(size) stored nodes."""
    _check_size(size, "size")
    if size == 0:
        return EMPTY_ROOT
    return _range_hash(0, size, get_node)


def inclusion_proof(index: int, size: int, get_node: GetNode) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 9162 §2.1.3.1, bottom-up, in O(log size) `get_node` calls."""
    return [_range_hash(begin, end, get_node) for begin, end in _sibling_ranges(index, size)]


def _sibling_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose hashes make PATH(index, D[0:size]), bottom-up."""
    _check_size(size, "size")
    _check_size(index, "index")
    if index >= size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    # Walk down from the root recording siblings (top-down), then reverse: PATH lists them
    # from the leaf up.
    siblings: list[tuple[int, int]] = []
    begin, end = 0, size
    while end - begin > 1:
        split = begin + _largest_power_of_two_below(end - begin)
        if index < split:
            siblings.append((split, end))
            end = split
        else:
            siblings.append((begin, split))
            begin = split
    siblings.reverse()
    return siblings


def consistency_proof(old_size: int, new_size: int, get_node: GetNode) -> list[bytes]:
    """PROOF(old_size, D[0:new_size]) of RFC 9162 §2.1.4.1, in O(log new_size) `get_node` calls.

    Defined for 0 < old_size <= new_size; equal sizes give the empty proof.
    """
    _check_size(old_size, "old size")
    _check_size(new_size, "new size")
    if not 0 < old_size <= new_size:
        raise ValueError(
            f"a consistency proof needs 0 < old size <= new size (got {old_size}, {new_size})"
        )
    # SUBPROOF(m, D[begin:end], b), unrolled: `m` counts the old leaves inside [begin, end).
    proof: list[bytes] = []
    m, begin, end, whole_old_tree = old_size, 0, new_size, True
    while m != end - begin:
        k = _largest_power_of_two_below(end - begin)
        if m <= k:
            proof.append(_range_hash(begin + k, end, get_node))
            end = begin + k
        else:
            proof.append(_range_hash(begin, begin + k, get_node))
            m, begin, whole_old_tree = m - k, begin + k, False
    if not whole_old_tree:
        proof.append(_range_hash(begin, end, get_node))
    proof.reverse()
    return proof


def inclusion_proof_nodes(index: int, size: int) -> list[tuple[int, int]]:
    """The stored nodes `inclusion_proof(index, size, ...)` reads. Which nodes a proof needs
    follows from the tree's shape alone, so a store across a network can send them all in one
    request (Ledger.get_nodes) instead of one round trip each."""
    return [key for begin, end in _sibling_ranges(index, size) for key in _range_nodes(begin, end)]


def consistency_proof_nodes(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The stored nodes `consistency_proof(old_size, new_size, ...)` reads, in order."""
    wanted: list[tuple[int, int]] = []
    consistency_proof(old_size, new_size, _recorder(wanted))
    return wanted


def inclusion_proofs(indices: Iterable[int], size: int,
                     get_nodes: Callable[[list[tuple[int, int]]], dict[tuple[int, int], bytes]],
                     get_node: GetNode) -> list[list[bytes]]:
    """`inclusion_proof` of each index in one tree. Proofs in one tree share their upper
    siblings (an export carries thousands): each sibling's hash is computed once, and
    `get_nodes` is asked only for nodes no earlier proof read. A node it did not return is asked
    of `get_node`, whose error names it."""
    held: dict[tuple[int, int], bytes] = {}
    hashed: dict[tuple[int, int], bytes] = {}
    read = prefetched(held, get_node)
    proofs: list[list[bytes]] = []
    for index in indices:
        ranges = _sibling_ranges(index, size)
        missing = [key for r in ranges if r not in hashed for key in _range_nodes(*r)
                   if key not in held]
        if missing:
            held.update(get_nodes(missing))
        proof = []
        for r in ranges:
            digest = hashed.get(r)
            if digest is None:
                digest = hashed[r] = _range_hash(*r, read)
            proof.append(digest)
        proofs.append(proof)
    return proofs


def _recorder(wanted: list[tuple[int, int]]) -> GetNode:
    def record(level: int, index: int) -> bytes:
        wanted.append((level, index))
        return bytes(32)  # any hash: only the calls matter
    return record


def prefetched(found: dict[tuple[int, int], bytes], fallback: GetNode) -> GetNode:
    """A get_node answering from nodes fetched beforehand; anything else (a node the store did
    not return) is asked of `fallback`, whose error names what is missing."""
    def get(level: int, index: int) -> bytes:
        node = found.get((level, index))
        return node if node is not None else fallback(level, index)
    return get


class TreeBuilder:
    """An in-memory RFC 9162 tree over leaf hashes: O(1) amortised per append, O(log n) state.

    Keeps only the complete subtrees on the right edge (a compact range from 0), so a whole log
    can be re-hashed and checked against a checkpoint in one pass.
    """

    __slots__ = ("_peaks", "_size")

    def __init__(self) -> None:
        self._peaks: list[bytes] = []  # hashes of the complete subtrees, largest (leftmost) first
        self._size = 0

    @property
    def size(self) -> int:
        return self._size

    def append(self, leaf: bytes) -> list[NodeEntry]:
        """Add one leaf hash; returns the complete nodes it creates, as `nodes_after_append`."""
        _check_hash(leaf, "leaf hash")
        index = self._size
        created: list[NodeEntry] = [(0, index, leaf)]
        level, current = 0, leaf
        while index & 1:
            current = node_hash(self._peaks.pop(), current)
            level, index = level + 1, index >> 1
            created.append((level, index, current))
        self._peaks.append(current)
        self._size += 1
        return created

    def extend(self, leaves: Iterable[bytes]) -> None:
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        """MTH of every leaf appended so far (EMPTY_ROOT when none)."""
        if not self._peaks:
            return EMPTY_ROOT
        current = self._peaks[-1]
        for peak in reversed(self._peaks[:-1]):
            current = node_hash(peak, current)
        return current


# ---------------------------------------------------------------------------------------------
# Verification


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """The root that `proof` implies for leaf `index` of a tree of `size` (RFC 9162 §2.1.3.2)."""
    _check_size(size, "tree size", error=ProofError)
    _check_size(index, "leaf index", error=ProofError)
    if index >= size:
        raise ProofError(f"leaf index {index} is beyond the tree size {size}")
    if len(leaf_hash) != HASH_SIZE:
        raise ProofError(f"leaf hash is {len(leaf_hash)} bytes, want {HASH_SIZE}")
    _check_proof_hashes(proof)
    fn, sn = index, size - 1
    r = leaf_hash
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    return r


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that `leaf_hash` is leaf `index` of the tree (`size`, `root`); raise ProofError."""
    calculated = root_from_inclusion_proof(leaf_hash, index, size, proof)
    if calculated != root:
        raise ProofError(f"inclusion proof for leaf {index} does not lead to the tree's root")


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree (size2, root2) extends the tree (size1, root1) (RFC 9162 §2.1.4.2).

    Raises ProofError; returns None when the proof holds.
    """
    _check_size(size1, "first tree size", error=ProofError)
    _check_size(size2, "second tree size", error=ProofError)
    if size2 < size1:
        raise ProofError(f"second tree size {size2} is smaller than first tree size {size1}")
    if size1 == 0:
        raise ProofError("a consistency proof from an empty tree is meaningless")
    if size1 == size2:
        if proof:
            raise ProofError("trees of equal size need an empty consistency proof")
        if root1 != root2:
            raise ProofError(f"two trees of size {size1} have different roots")
        return
    if not proof:
        raise ProofError("consistency proof is empty")
    _check_proof_hashes(proof)
    for name, root in (("first root", root1), ("second root", root2)):
        if len(root) != HASH_SIZE:
            raise ProofError(f"{name} is {len(root)} bytes, want {HASH_SIZE}")

    path = list(proof)
    if size1 & (size1 - 1) == 0:  # size1 is an exact power of two
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if fr != root1:
        raise ProofError(f"consistency proof does not lead to the root of tree size {size1}")
    if sr != root2:
        raise ProofError(f"consistency proof does not lead to the root of tree size {size2}")


# ---------------------------------------------------------------------------------------------
# Helpers


def _largest_power_of_two_below(n: int) -> int:
    """The k of RFC 9162: the largest power of two smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _range_nodes(begin: int, end: int) -> list[tuple[int, int]]:
    """The complete stored nodes a range splits into, largest first (see `_range_hash`)."""
    length = end - begin
    nodes: list[tuple[int, int]] = []
    position = begin
    for level in range(length.bit_length() - 1, -1, -1):
        if length >> level & 1:
            nodes.append((level, position >> level))
            position += 1 << level
    return nodes


def _range_hash(begin: int, end: int, get_node: GetNode) -> bytes:
    """MTH(D[begin:end]) for a subtree of the RFC tree: a complete node, or a right-edge subtree.

    Such a range starts at a multiple of the smallest power of two >= its length, so it splits
    into complete nodes of strictly decreasing size (the binary digits of its length); its MTH
    folds them from the right. Costs popcount(end - begin) calls.
    """
    peaks = [get_node(level, index) for level, index in _range_nodes(begin, end)]
    current = peaks[-1]
    for peak in reversed(peaks[:-1]):
        current = node_hash(peak, current)
    return current


def _check_size(value: int, what: str, error: type[ValueError] = ValueError) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise error(f"{what} must be a non-negative integer (got {value!r})")


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ValueError(f"{what} is {len(value)} bytes, want {HASH_SIZE}")


def _check_proof_hashes(proof: Sequence[bytes]) -> None:
    for position, element in enumerate(proof):
        if len(element) != HASH_SIZE:
            raise ProofError(f"proof hash {position} is {len(element)} bytes, want {HASH_SIZE}")
