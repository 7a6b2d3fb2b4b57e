"""The listing: both ways of choosing a folder give the same one, and every name the browser
can hand over becomes a package path that `unpack` accepts, without dropping a file."""

from __future__ import annotations

from hypothesis import given, strategies as st

from pcir_upload.page.disc.disc import DiscFile, make_listing, package_path, path_problem


def test_the_listing_is_sorted_whatever_order_the_browser_gives() -> None:
    a = make_listing([("b/2", 2), ("a", 1), ("b/1", 3)])
    b = make_listing([("b/1", 3), ("b/2", 2), ("a", 1)])
    assert [f for _, f in a] == [f for _, f in b] == [DiscFile("a", 1), DiscFile("b/1", 3), DiscFile("b/2", 2)]
    assert [i for i, _ in a] == [1, 2, 0]  # each entry's position in what the browser gave


def test_names_the_rule_forbids_are_changed_and_their_original_kept() -> None:
    listing = dict((f.original, f.path) for _, f in make_listing(
        [("a\\b", 1), ("C:x/y", 1), ("tab\there", 1), ("x\udc80y", 1)]))
    assert listing == {"a\\b": "a_b", "C:x/y": "C_x/y", "tab\there": "tab_here", "x\ufffdy": "x\ufffdy"}


def test_changed_names_never_take_a_real_files_name() -> None:
    listing = make_listing([("a\\b", 1), ("a_b", 2), ("a\x01b", 3)])
    assert [(f.path, f.size, f.original) for _, f in listing] == [
        ("a_b", 2, None), ("a_b (2)", 1, "a\\b"), ("a_b (3)", 3, "a\x01b")]


@given(st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=20))
def test_every_browser_name_becomes_an_acceptable_distinct_path(names) -> None:
    names = [n for n in names if package_path_ok(n)]
    listing = make_listing([(n, 1) for n in names])
    paths = [f.path for _, f in listing]
    assert len(paths) == len(set(paths)) == len(names)
    assert all(path_problem(p) is None for p in paths)


def package_path_ok(name: str) -> bool:
    try:
        package_path(name)
        return True
    except ValueError:
        return False  # only names with nothing left after dropping '' and '.' parts


def test_the_rule() -> None:
    assert path_problem("DICOM/ST000001/IM000001") is None
    assert path_problem("Ärztebrief 2024.pdf") is None
    for bad in ["", "/abs", "a/../b", "a//b", "./a", "C:/x", "a\\b", "a\nb", "x" * 5000]:
        assert path_problem(bad), bad
