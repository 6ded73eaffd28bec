"""The client's cache of image digests."""

import os
import time

from vzmaster.digests import DigestCache


def old_file(tmp_path, data=b"image"):
    path = tmp_path / "img.tar"
    path.write_bytes(data)
    past = time.time() - 60
    os.utime(path, (past, past))
    return str(path)


def test_a_stored_digest_is_found_while_the_file_is_unchanged(tmp_path):
    cache = DigestCache(str(tmp_path / "cache.json"))
    path = old_file(tmp_path)
    cache.store(path, os.stat(path), "ab" * 32)
    assert cache.lookup(path, os.stat(path)) == "ab" * 32


def test_a_changed_file_misses(tmp_path):
    cache = DigestCache(str(tmp_path / "cache.json"))
    path = old_file(tmp_path)
    cache.store(path, os.stat(path), "ab" * 32)
    with open(path, "ab") as out:
        out.write(b"more")
    assert cache.lookup(path, os.stat(path)) is None


def test_a_file_changed_just_now_is_not_cached(tmp_path):
    cache = DigestCache(str(tmp_path / "cache.json"))
    path = tmp_path / "fresh.tar"
    path.write_bytes(b"x")
    cache.store(str(path), os.stat(path), "ab" * 32)
    assert cache.lookup(str(path), os.stat(path)) is None


def test_an_unreadable_cache_is_an_empty_cache(tmp_path):
    (tmp_path / "cache.json").write_text("{not json")
    cache = DigestCache(str(tmp_path / "cache.json"))
    path = old_file(tmp_path)
    assert cache.lookup(path, os.stat(path)) is None
    cache.store(path, os.stat(path), "cd" * 32)
    assert cache.lookup(path, os.stat(path)) == "cd" * 32
