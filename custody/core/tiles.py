"""C2SP tlog-tiles (https://c2sp.org/tlog-tiles): tile paths, which tree hashes a tile holds, entry
bundles, and the tree nodes a reader rebuilds from tiles. Pure: no I/O.

A tile of level L, index N and width W holds the hashes of the complete subtrees of height 8·L
with indices N·256 … N·256+W−1: exactly the stored Merkle nodes (8·L, i) of docs/FORMAT.md §9.1.
A full tile has W = 256; a partial one (the tree's right edge) 1 ≤ W ≤ 255. Level 0 holds leaf
hashes, and the entry bundle of the same index holds the entries they hash.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from custody.core import merkle
from custody.errors import EXIT_PROBLEM, CustodyError

TILE_HEIGHT = 8  # tree levels one tile spans
TILE_WIDTH = 1 << TILE_HEIGHT  # hashes in a full tile
MAX_LEVEL = 63
MAX_ENTRY_SIZE = 0xFFFF  # an entry bundle prefixes each entry with a big-endian uint16 length
HASH_SIZE = merkle.HASH_SIZE


class TileError(CustodyError, ValueError):
    """A tile path, a tile's bytes or an entry bundle that does not follow tlog-tiles."""

    exit_code = EXIT_PROBLEM


class EntryTooLarge(CustodyError, ValueError):
    """An entry longer than 65,535 bytes: it cannot be put in a tlog-tiles entry bundle."""

    def __init__(self, seq: int, size: int) -> None:
        super().__init__(
            f"entry {seq} is {size} bytes, more than the {MAX_ENTRY_SIZE} a tlog-tiles entry "
            "bundle can hold"
        )
        self.seq = seq
        self.size = size


@dataclass(frozen=True, slots=True)
class Tile:
    """One tile: `level` L (None for an entry bundle), `index` N, `width` W (256 when full)."""

    level: int | None
    index: int
    width: int = TILE_WIDTH

    @property
    def full(self) -> bool:
        return self.width == TILE_WIDTH

    @property
    def path(self) -> str:
        """The resource path under the log's prefix: `tile/<L>/<N>[.p/<W>]` or
        `tile/entries/<N>[.p/<W>]`."""
        kind = "entries" if self.level is None else str(self.level)
        suffix = "" if self.full else f".p/{self.width}"
        return f"tile/{kind}/{encode_index(self.index)}{suffix}"

    @property
    def node_level(self) -> int:
        """The Merkle tree level (§9.1 `merkle_nodes.level`) of the hashes it holds."""
        return TILE_HEIGHT * (self.level or 0)

    @property
    def first(self) -> int:
        """The node index (at `node_level`) of its first hash; entry bundles: the first seq."""
        return self.index * TILE_WIDTH

    def end(self) -> int:
        """The tree size this tile needs: one past the last leaf its hashes (or entries) cover."""
        return (self.first + self.width) << self.node_level


def encode_index(index: int) -> str:
    """N as zero-padded three-digit path elements, all but the last prefixed `x`:
    1234067 -> `x001/x234/067`."""
    if index < 0:
        raise ValueError(f"tile index must be non-negative (got {index})")
    groups = [f"{index % 1000:03d}"]
    index //= 1000
    while index:
        groups.append(f"x{index % 1000:03d}")
        index //= 1000
    return "/".join(reversed(groups))


_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_INDEX = re.compile(r"(?:x[0-9]{3}/)*[0-9]{3}")


def parse_path(path: str) -> Tile:
    """The tile a path names (`<L>/<N>[.p/<W>]` or `entries/<N>[.p/<W>]`, after `tile/`).
    Only the canonical spelling is accepted: no leading zeros, no empty `x000` groups."""
    kind, _, rest = path.partition("/")
    level: int | None
    if kind == "entries":
        level = None
    elif _DECIMAL.fullmatch(kind) and int(kind) <= MAX_LEVEL:
        level = int(kind)
    else:
        raise TileError(f"tile level {kind!r} is not an integer from 0 to {MAX_LEVEL}")
    index_text, dot_p, width_text = rest.partition(".p/")
    if not _INDEX.fullmatch(index_text):
        raise TileError(f"tile index {index_text!r} is not x-prefixed three-digit groups")
    index = int(index_text.replace("x", "").replace("/", ""))
    if encode_index(index) != index_text:
        raise TileError(f"tile index {index_text!r} is not written canonically")
    width = TILE_WIDTH
    if dot_p:
        if not _DECIMAL.fullmatch(width_text) or not 1 <= int(width_text) < TILE_WIDTH:
            raise TileError(f"partial tile width {width_text!r} is not an integer from 1 to 255")
        width = int(width_text)
    return Tile(level, index, width)


def width_in_tree(level: int | None, index: int, size: int) -> int:
    """The width tile (level, index) has in a tree of `size` leaves: 256 when full, 1..255 on
    the right edge, 0 when the tree does not reach it."""
    hashes = size >> (TILE_HEIGHT * (level or 0))
    return max(0, min(TILE_WIDTH, hashes - index * TILE_WIDTH))


def tiles_of_tree(size: int) -> list[Tile]:
    """Every hash tile of a tree of `size` leaves, level by level: its full tiles and, where the
    level's count is not a multiple of 256, one partial tile (spec: a tree of 70,000 has 273 full
    level-0 tiles and one of width 112, one full and one of width 17 at level 1, one of width 1
    at level 2)."""
    found: list[Tile] = []
    level = 0
    while size >> (TILE_HEIGHT * level):
        hashes = size >> (TILE_HEIGHT * level)
        found += [Tile(level, n) for n in range(hashes // TILE_WIDTH)]
        if hashes % TILE_WIDTH:
            found.append(Tile(level, hashes // TILE_WIDTH, hashes % TILE_WIDTH))
        level += 1
    return found


def bundles_of_tree(size: int) -> list[Tile]:
    """Every entry bundle of a tree of `size` leaves (the full ones, then any partial one)."""
    return [Tile(None, t.index, t.width) for t in tiles_of_tree(size) if t.level == 0]


# Bytes ----------------------------------------------------------------------------------------


def encode_hashes(hashes: Sequence[bytes]) -> bytes:
    for h in hashes:
        if len(h) != HASH_SIZE:
            raise ValueError(f"a tile hash is {len(h)} bytes, want {HASH_SIZE}")
    return b"".join(hashes)


def decode_hashes(tile: Tile, data: bytes) -> list[bytes]:
    """The tile's hashes; TileError unless it is exactly `width` hashes."""
    if len(data) != tile.width * HASH_SIZE:
        raise TileError(
            f"{tile.path} is {len(data)} bytes, want {tile.width * HASH_SIZE} "
            f"({tile.width} hashes)"
        )
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def encode_bundle(first_seq: int, entries: Sequence[bytes]) -> bytes:
    """Each entry as a big-endian uint16 length and its bytes (the leaf data: §5.3 hashes exactly
    these bytes). EntryTooLarge for an entry the uint16 cannot count."""
    out = bytearray()
    for offset, entry in enumerate(entries):
        if len(entry) > MAX_ENTRY_SIZE:
            raise EntryTooLarge(first_seq + offset, len(entry))
        out += len(entry).to_bytes(2, "big") + entry
    return bytes(out)


def decode_bundle(tile: Tile, data: bytes) -> list[bytes]:
    """The entries of a bundle; TileError unless it is exactly `width` length-prefixed entries."""
    entries: list[bytes] = []
    at = 0
    while at < len(data):
        if at + 2 > len(data):
            raise TileError(f"{tile.path} ends inside an entry's length")
        length = int.from_bytes(data[at : at + 2], "big")
        if at + 2 + length > len(data):
            raise TileError(f"{tile.path} ends inside entry {len(entries)}")
        entries.append(data[at + 2 : at + 2 + length])
        at += 2 + length
    if len(entries) != tile.width:
        raise TileError(f"{tile.path} holds {len(entries)} entries, want {tile.width}")
    return entries


# Reading the tree from tiles ------------------------------------------------------------------


def tile_holding(level: int, index: int, size: int) -> Tile:
    """The tile of a tree of `size` leaves from which node (level, index) is computed: a node of
    height 8·L + r is the root of 2^r consecutive hashes of one level-L tile."""
    tile_level, below = divmod(level, TILE_HEIGHT)
    n = (index << below) // TILE_WIDTH
    width = width_in_tree(tile_level, n, size)
    if (index + 1) << level > size or width == 0:
        raise ValueError(f"node ({level}, {index}) is not a complete subtree of a tree of {size}")
    return Tile(tile_level, n, width)


def tiles_for_nodes(nodes: Iterable[tuple[int, int]], size: int) -> list[Tile]:
    """The tiles a reader of a tree of `size` leaves fetches to know these nodes (in order,
    each once): e.g. those of merkle.consistency_proof_nodes(old, size)."""
    return list(dict.fromkeys(tile_holding(level, index, size) for level, index in nodes))


def node_from_tiles(level: int, index: int, size: int, fetched: Mapping[Tile, bytes]) -> bytes:
    """The hash of complete node (level, index) of a tree of `size` leaves, from fetched tiles
    (their bytes as served; TileError if a tile is missing or of the wrong length)."""
    tile = tile_holding(level, index, size)
    data = fetched.get(tile)
    if data is None:
        raise TileError(f"{tile.path} was not fetched")
    hashes = decode_hashes(tile, data)
    below = level % TILE_HEIGHT
    start = (index << below) - tile.first
    layer = hashes[start : start + (1 << below)]
    while len(layer) > 1:
        layer = [merkle.node_hash(layer[i], layer[i + 1]) for i in range(0, len(layer), 2)]
    return layer[0]


def node_reader(size: int, fetched: Mapping[Tile, bytes]) -> merkle.GetNode:
    """A merkle.GetNode over fetched tiles of a tree of `size` leaves (for proofs and roots)."""

    def get(level: int, index: int) -> bytes:
        return node_from_tiles(level, index, size, fetched)

    return get
