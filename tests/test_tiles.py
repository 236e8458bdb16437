"""C2SP tlog-tiles (https://c2sp.org/tlog-tiles, text of C2SP/C2SP tlog-tiles.md): tile paths,
tile contents and entry bundles against the spec's rules and a naive RFC 9162 reference."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from custody.core import merkle
from custody.core.tiles import (
    MAX_ENTRY_SIZE,
    EntryTooLarge,
    Tile,
    TileError,
    bundles_of_tree,
    decode_bundle,
    decode_hashes,
    encode_bundle,
    encode_hashes,
    encode_index,
    node_reader,
    parse_path,
    tiles_for_nodes,
    tiles_of_tree,
)


def naive_mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1 MTH, as written there (leaves are leaf hashes here)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + naive_mth(leaves[:k]) + naive_mth(leaves[k:])).digest()


class StoredTree:
    """A tree as custody's ledger stores it: every complete node from merkle.TreeBuilder."""

    def __init__(self, size: int) -> None:
        self.leaves = [merkle.leaf_hash(b"entry %d" % i) for i in range(size)]
        self.nodes: dict[tuple[int, int], bytes] = {}
        builder = merkle.TreeBuilder()
        for leaf in self.leaves:
            self.nodes.update({(lv, ix): h for lv, ix, h in builder.append(leaf)})
        self.root = builder.root()
        self.size = size

    def served(self, tile: Tile) -> bytes:
        """What the server sends: the stored nodes of the tile's level and range."""
        return encode_hashes([self.nodes[(tile.node_level, tile.first + i)]
                              for i in range(tile.width)])


# Paths ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("index", "text"), [
    (0, "000"), (7, "007"), (999, "999"), (1000, "x001/000"), (1234067, "x001/x234/067"),
    (10**9, "x001/x000/x000/000"),
])
def test_tile_index_is_written_in_x_prefixed_three_digit_groups(index, text):
    assert encode_index(index) == text  # the spec's example: 1234067 -> x001/x234/067
    assert parse_path(f"0/{text}") == Tile(0, index)


def test_tile_paths_name_level_index_and_partial_width():
    assert Tile(0, 1234067).path == "tile/0/x001/x234/067"
    assert Tile(2, 5, 17).path == "tile/2/005.p/17"
    assert Tile(None, 3, 255).path == "tile/entries/003.p/255"
    for tile in (Tile(0, 1234067), Tile(2, 5, 17), Tile(None, 3, 255), Tile(63, 0, 1)):
        assert parse_path(tile.path.removeprefix("tile/")) == tile


@pytest.mark.parametrize("bad", [
    "00/000", "64/000", "-1/000", "a/000", "0/1", "0/0001", "0/x000/001", "0/001/002",
    "0/000.p/0", "0/000.p/256", "0/000.p/01", "0/000.p/", "0/000.q/5", "0/X001/000",
    "entries/1", "entries/000.p/300", "0/000/", "0/",
])
def test_tile_paths_off_the_canonical_spelling_are_refused(bad):
    with pytest.raises(TileError):
        parse_path(bad)


def test_tiles_of_a_tree_follow_the_spec_examples():
    # "a tree of size 70,000 will be represented by 273 full level 0 tiles, one partial level 0
    # tile of width 112, one full level 1 tile, one partial level 1 tile of width 17, and one
    # partial level 2 tile of width 1"
    found = tiles_of_tree(70_000)
    assert [t for t in found if t.level == 0] == [Tile(0, n) for n in range(273)] + [
        Tile(0, 273, 112)]
    assert [t for t in found if t.level != 0] == [Tile(1, 0), Tile(1, 1, 17), Tile(2, 0, 1)]
    # "a tree of size 256 will be represented by a full level 0 tile and a partial level 1 tile
    # of width 1"
    assert tiles_of_tree(256) == [Tile(0, 0), Tile(1, 0, 1)]
    assert tiles_of_tree(0) == [] and bundles_of_tree(0) == []
    assert bundles_of_tree(257) == [Tile(None, 0), Tile(None, 1, 1)]


# Contents ---------------------------------------------------------------------------------------


def check_tree(tree: StoredTree) -> None:
    """Every tile of the tree holds the spec's hashes, and a reader that has only the tiles
    recomputes the root (and any consistency proof) that custody's own Merkle code gives."""
    fetched = {tile: tree.served(tile) for tile in tiles_of_tree(tree.size)}
    for tile, data in fetched.items():
        assert tile.level is not None
        span = 256**tile.level
        # MTH(D[(n * 256 + i) * 256**l : (n * 256 + i + 1) * 256**l]), i < width
        want = [naive_mth(tree.leaves[(tile.index * 256 + i) * span:
                                      (tile.index * 256 + i + 1) * span])
                for i in range(tile.width)]
        assert decode_hashes(tile, data) == want
    # the root from the tiles alone (a client with no access to the ledger)
    assert merkle.root_hash(tree.size, node_reader(tree.size, fetched)) == tree.root


@pytest.mark.parametrize("size", [0, 1, 255, 256, 257, 65536 + 1])
def test_tiles_hold_the_trees_hashes_and_give_its_root(size):
    check_tree(StoredTree(size))


@settings(max_examples=40, deadline=None)
@given(size=st.integers(1, 3000), data=st.data())
def test_a_consistency_proof_from_tiles_is_custodys_own(size, data):
    tree = StoredTree(size)
    old = data.draw(st.integers(1, size))
    nodes = merkle.consistency_proof_nodes(old, size)
    fetched = {t: tree.served(t) for t in tiles_for_nodes(nodes, size)}
    assert set(fetched) <= set(tiles_of_tree(size))  # only tiles the tree has
    from_tiles = merkle.consistency_proof(old, size, node_reader(size, fetched))
    assert from_tiles == merkle.consistency_proof(old, size, lambda lv, ix: tree.nodes[(lv, ix)])
    old_root = naive_mth(tree.leaves[:old])
    merkle.verify_consistency(old, size, from_tiles, old_root, tree.root)


@settings(max_examples=30, deadline=None)
@given(size=st.integers(1, 2000), data=st.data())
def test_an_inclusion_proof_from_tiles_verifies(size, data):
    tree = StoredTree(size)
    index = data.draw(st.integers(0, size - 1))
    nodes = merkle.inclusion_proof_nodes(index, size)
    fetched = {t: tree.served(t) for t in tiles_for_nodes(nodes, size)}
    path = merkle.inclusion_proof(index, size, node_reader(size, fetched))
    merkle.verify_inclusion(tree.leaves[index], index, size, path, tree.root)


def test_a_tile_of_the_wrong_length_is_refused():
    with pytest.raises(TileError, match="want 96"):
        decode_hashes(Tile(0, 0, 3), bytes(95))


# Entry bundles ----------------------------------------------------------------------------------


@given(st.lists(st.binary(max_size=300), min_size=1, max_size=40))
def test_an_entry_bundle_is_uint16_length_prefixed_entries(entries):
    data = encode_bundle(0, entries)
    assert decode_bundle(Tile(None, 0, len(entries)), data) == entries
    assert data[:2] == len(entries[0]).to_bytes(2, "big")


def test_an_entry_larger_than_a_uint16_cannot_be_bundled():
    assert decode_bundle(Tile(None, 0, 1), encode_bundle(0, [bytes(MAX_ENTRY_SIZE)])) == [
        bytes(MAX_ENTRY_SIZE)]
    with pytest.raises(EntryTooLarge, match="entry 257 is 65536 bytes"):
        encode_bundle(256, [b"x", bytes(MAX_ENTRY_SIZE + 1)])


@pytest.mark.parametrize(("damage", "why"), [
    (b"\x00", "inside an entry's length"), (b"\x00\x05ab", "inside entry 2"),
    (b"\x00\x00", "holds 3 entries"),
])
def test_a_damaged_entry_bundle_is_refused(damage, why):
    with pytest.raises(TileError, match=why):
        decode_bundle(Tile(None, 0, 2), encode_bundle(0, [b"a", b"bc"]) + damage)
