"""Compiled Hyperscan databases on disk (workers/data/hyperscan_cache): what a process compiled
once, the next one loads; a damaged or foreign file is compiled again; an unwritable folder
changes nothing but the time."""

from __future__ import annotations

import types

import pytest

from workers.data import hyperscan_cache
from workers.data.hyperscan_cache import block_database, database_key

hyperscan = pytest.importorskip("hyperscan")

EXPRESSIONS = [rb"1[3-9][0-9]{9}", rb"[a-z]+@[a-z]+\.com", "王[芳伟]".encode()]
FLAGS = [0, hyperscan.HS_FLAG_CASELESS, hyperscan.HS_FLAG_UTF8]
TEXT = "call 13812345678 or Mail@Example.com, 王芳".encode()


def _matches(db) -> list[tuple[int, int]]:
    found: list[tuple[int, int]] = []
    db.scan(
        TEXT,
        match_event_handler=lambda i, start, end, flags, ctx: found.append((i, end)),
        scratch=hyperscan.Scratch(db),
    )
    return sorted(found)


def _no_compiler() -> types.SimpleNamespace:
    """The hyperscan module, except that making a database to compile fails the test."""

    def database(*args, **kwargs):
        raise AssertionError("compiled instead of loading the stored database")

    return types.SimpleNamespace(**{**vars(hyperscan), "Database": database})


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ATELIER_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_compiled_database_is_stored_and_the_next_process_loads_it_without_compiling(cache):
    first = block_database(hyperscan, "t", EXPRESSIONS, FLAGS)
    expected = _matches(first)
    assert expected == [(0, 16), (1, 36), (2, 44)]
    (stored,) = cache.glob("t-*.hsdb")
    again = block_database(_no_compiler(), "t", EXPRESSIONS, FLAGS)
    assert _matches(again) == expected
    assert list(cache.glob("t-*.hsdb")) == [stored]
    assert not list(cache.glob(".*tmp"))


def test_other_expressions_or_flags_are_stored_under_another_name(cache):
    block_database(hyperscan, "t", EXPRESSIONS, FLAGS)
    block_database(hyperscan, "t", EXPRESSIONS, [0, 0, hyperscan.HS_FLAG_UTF8])
    block_database(hyperscan, "t", EXPRESSIONS[:2], FLAGS[:2])
    assert len(list(cache.glob("t-*.hsdb"))) == 3
    mode = hyperscan.HS_MODE_BLOCK
    assert database_key(hyperscan, mode, EXPRESSIONS, FLAGS) == database_key(
        hyperscan, mode, list(EXPRESSIONS), list(FLAGS)
    )


@pytest.mark.parametrize("damage", ["truncated", "flipped", "foreign"])
def test_a_damaged_or_foreign_file_is_compiled_again_and_replaced(cache, damage):
    expected = _matches(block_database(hyperscan, "t", EXPRESSIONS, FLAGS))
    (stored,) = cache.glob("t-*.hsdb")
    data = stored.read_bytes()
    if damage == "truncated":
        stored.write_bytes(data[: len(data) // 2])
    elif damage == "flipped":
        at = len(data) - 100
        stored.write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :])
    else:  # a well-formed file whose payload hyperscan refuses (another build, another CPU)
        import hashlib

        payload = b"\x00" * 256
        stored.write_bytes(hyperscan_cache.MAGIC + hashlib.sha256(payload).digest() + payload)
    assert _matches(block_database(hyperscan, "t", EXPRESSIONS, FLAGS)) == expected
    assert _matches(block_database(_no_compiler(), "t", EXPRESSIONS, FLAGS)) == expected


def test_an_unwritable_cache_folder_only_costs_a_compile(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    monkeypatch.setenv("ATELIER_CACHE_DIR", str(blocker / "cache"))
    assert _matches(block_database(hyperscan, "t", EXPRESSIONS, FLAGS)) == [
        (0, 16),
        (1, 36),
        (2, 44),
    ]
    assert blocker.read_text() == "a file where the folder should be"
    assert list(tmp_path.iterdir()) == [blocker]


def test_the_folder_follows_the_deployment_state_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("ATELIER_CACHE_DIR", raising=False)
    monkeypatch.setenv("ATELIER_VAR_DIR", str(tmp_path / "var"))
    assert hyperscan_cache.cache_dir() == tmp_path / "var" / "cache"
    monkeypatch.setenv("ATELIER_CACHE_DIR", str(tmp_path / "c"))
    assert hyperscan_cache.cache_dir() == tmp_path / "c"


def test_storing_a_new_version_deletes_the_ones_unused_for_two_weeks(cache):
    import os
    import time

    old = block_database(hyperscan, "t", EXPRESSIONS[:2], FLAGS[:2])
    (old_file,) = cache.glob("t-*.hsdb")
    block_database(hyperscan, "u", EXPRESSIONS[:1], FLAGS[:1])
    (other_file,) = cache.glob("u-*.hsdb")
    weeks_ago = time.time() - 15 * 86400
    os.utime(old_file, (weeks_ago, weeks_ago))
    os.utime(other_file, (weeks_ago, weeks_ago))
    recent = block_database(hyperscan, "t", EXPRESSIONS[1:], FLAGS[1:])
    assert not old_file.exists()  # another version of "t", unused for 15 days
    assert other_file.exists()  # another name is not touched
    assert _matches(recent) == [(0, 36), (1, 44)] and _matches(old) == [(0, 16), (1, 36)]


def test_loading_a_file_keeps_it_from_being_deleted(cache):
    import os
    import time

    block_database(hyperscan, "t", EXPRESSIONS[:2], FLAGS[:2])
    (kept,) = cache.glob("t-*.hsdb")
    weeks_ago = time.time() - 15 * 86400
    os.utime(kept, (weeks_ago, weeks_ago))
    block_database(_no_compiler(), "t", EXPRESSIONS[:2], FLAGS[:2])  # used again: touched
    block_database(hyperscan, "t", EXPRESSIONS[1:], FLAGS[1:])
    assert kept.exists()
    assert len(list(cache.glob("t-*.hsdb"))) == 2


def test_pruning_leaves_a_name_that_only_starts_like_another_alone(cache):
    import os
    import time

    block_database(hyperscan, "t-x", EXPRESSIONS[:1], FLAGS[:1])
    (longer,) = cache.glob("t-x-*.hsdb")
    weeks_ago = time.time() - 15 * 86400
    os.utime(longer, (weeks_ago, weeks_ago))
    block_database(hyperscan, "t", EXPRESSIONS[:2], FLAGS[:2])  # stores "t": prunes only "t"
    assert longer.exists()
