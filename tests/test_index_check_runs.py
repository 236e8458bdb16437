"""verify's index check compares both indexes' rows a run at a time while they are equal and
merges row by row from the first run that differs: it must name exactly what the row-by-row merge
names, wherever the difference falls (before, at or after a run's edge, or at the very end)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from custody.search import consistency
from custody.search.consistency import SAME_RUN, _merged_differences, _table_differences


class Rows:
    """An index as the check reads it: its compared rows of one table, in key order."""

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows = rows

    def compared_rows(self, table: str) -> Iterator[tuple[Any, ...]]:
        assert table == "item_names"
        return iter(self.rows)


def _names(n: int) -> list[tuple[Any, ...]]:
    return [(f"{i:064x}", f"IMG_{i:05d}.jpg", i) for i in range(n)]


def _edited(at: int, how: str, n: int) -> list[tuple[Any, ...]]:
    rows = _names(n)
    if how == "changed":
        rows[at] = (rows[at][0], rows[at][1], rows[at][2] + 7)
    elif how == "dropped":
        del rows[at]
    else:  # planted: a row no entry made, just after `at`
        rows.insert(at + 1, (rows[at][0], "zz-planted.jpg", 1))
    return rows


N = 3 * SAME_RUN + 17


@pytest.mark.parametrize("at", [0, 1, SAME_RUN - 1, SAME_RUN, 2 * SAME_RUN + 5, N - 1])
@pytest.mark.parametrize("how", ["changed", "dropped", "planted"])
def test_runs_name_what_the_row_by_row_merge_names(at: int, how: str) -> None:
    disk, fresh = Rows(_edited(at, how, N)), Rows(_names(N))
    named = list(_table_differences("item_names", 2, disk, fresh))  # type: ignore[arg-type]
    reference = list(_merged_differences("item_names", 2, iter(disk.rows), iter(fresh.rows)))
    assert named == reference and len(named) == 1
    assert f"{at:064x}" in named[0]


def test_equal_tables_name_nothing_and_a_tail_is_seen() -> None:
    assert list(_table_differences("item_names", 2, Rows(_names(N)),  # type: ignore[arg-type]
                                   Rows(_names(N)))) == []
    longer = Rows(_names(N + 1))
    named = list(_table_differences("item_names", 2, longer,  # type: ignore[arg-type]
                                    Rows(_names(N))))
    assert named == [f"item {N:064x}: file name 'IMG_{N:05d}.jpg' has no ledger entry "
                     "behind it"]
    assert consistency.SAME_RUN < N  # the runs above are really several
