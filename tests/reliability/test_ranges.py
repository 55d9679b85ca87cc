"""Selections are checked arithmetically before they are expanded (issue 30): a typo such as
`--tokens 0-100000000` is refused at once in one short line, not expanded into 10^8 ints."""

from __future__ import annotations

import time

import pytest

from tests.support import cli_args, run_cli
from tgo_store.errors import TgoError
from tgo_store.options import MAX_SELECTED, parse_selection


@pytest.mark.parametrize("flag, value", [("--tokens", "0-100000000"), ("--layers", "0-100000000"),
                                         ("--tokens", "0-2000000"), ("--tokens", "1,5-3"),
                                         ("--tokens", "0-" + "9" * 400)])
def test_a_huge_or_backwards_range_is_refused_at_once_in_one_short_line(flag, value, tmp_path, capsys) -> None:
    run_cli(["ingest", "--help"], capsys)  # the verbs' imports, paid once per process, are not the refusal
    start = time.perf_counter()
    done = run_cli(cli_args(str(tmp_path / "none*.pth"), str(tmp_path / "s.zarr"), flag, value), capsys)
    seconds = time.perf_counter() - start
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert len(lines[0]) < 300 and "bug in tgo" not in lines[0], lines[0]
    assert seconds < 1.0, f"refused after {seconds:.2f} s"
    assert not (tmp_path / "s.zarr").exists()


def test_selections_expand_as_before() -> None:
    assert parse_selection("0,3-5,8") == [0, 3, 4, 5, 8]
    assert parse_selection(" 2 ") == [2] and parse_selection("all") is None and parse_selection(None) is None
    assert parse_selection(f"0-{MAX_SELECTED - 1}") == list(range(MAX_SELECTED))
    with pytest.raises(TgoError, match="names 1000001 indices"):
        parse_selection(f"0-{MAX_SELECTED}")


def test_an_out_of_range_pick_names_a_few_values_not_the_whole_list() -> None:
    from tgo_store.capturers.base import select

    with pytest.raises(TgoError) as info:
        select(list(range(500_000)), 17, "token")
    message = str(info.value)
    assert len(message) < 200 and "tokens 17, 18, 19, 20, 21 ... (499983 in all)" in message, message
    assert select([3, 1, 1], 17, "token").tolist() == [1, 3]
