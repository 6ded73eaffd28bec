"""The image each app deploys: named on the nodes by content, hashed once, rebuilt only
when the recipe or a file it copied changed."""

import hashlib
import os

import pytest

from vzmaster.digests import DigestCache
from vzmaster.fleet import images
from vzmaster.imaging.builder import Recipe
from vzslave.errors import BadNameError


def test_the_name_on_the_node_is_the_app_and_its_content():
    assert images.node_image_name("web", "/x/web.tar.zst", "0123456789abcdef" * 4) == (
        "web-0123456789ab.tar.zst")


def test_a_name_that_is_not_an_image_name_is_refused():
    with pytest.raises(BadNameError):
        images.node_image_name("-web", "/x/a.tar", "0" * 64)


def test_a_file_image_is_hashed_and_remembered(tmp_path):
    path = tmp_path / "web.tar"
    path.write_bytes(b"image bytes")
    os.utime(path, (1e9, 1e9))  # not "just written": the cache trusts only settled files
    digests = DigestCache(str(tmp_path / "digests.json"))
    first = images.file_image("web", str(path), digests)
    assert first.sha256 == hashlib.sha256(b"image bytes").hexdigest()
    assert digests.lookup(str(path), os.stat(path)) == first.sha256
    assert (first.size, first.built) == (11, False)


def fake_build(monkeypatch, copied, sha="ab" * 32):
    calls = []

    class Pack:
        sha256, size = sha, 5

    class Result:
        image = Pack()

    def build_image(recipe, output):
        calls.append(output)
        with open(output, "wb") as image:
            image.write(b"12345")
        Result.copied = list(copied)
        return Result()

    monkeypatch.setattr(images, "build_image", build_image)
    return calls


def test_a_build_is_reused_while_its_recipe_and_copied_files_are_unchanged(tmp_path,
                                                                           monkeypatch):
    program = tmp_path / "server"
    program.write_bytes(b"v1")
    calls = fake_build(monkeypatch, [str(program)])
    recipe = Recipe(args=["/server"], ldd=[str(program)])
    built = images.build(str(tmp_path), "web", recipe)
    assert built.built and calls
    cached = images.cached_build(str(tmp_path), "web", recipe)
    assert cached is not None and cached.sha256 == built.sha256 and not cached.built


def test_a_changed_copied_file_makes_the_build_stale(tmp_path, monkeypatch):
    program = tmp_path / "server"
    program.write_bytes(b"v1")
    fake_build(monkeypatch, [str(program)])
    recipe = Recipe(args=["/server"], ldd=[str(program)])
    images.build(str(tmp_path), "web", recipe)
    program.write_bytes(b"v2 longer")
    assert images.cached_build(str(tmp_path), "web", recipe) is None


def test_a_changed_recipe_makes_the_build_stale(tmp_path, monkeypatch):
    fake_build(monkeypatch, [])
    images.build(str(tmp_path), "web", Recipe(args=["/a"]))
    assert images.cached_build(str(tmp_path), "web", Recipe(args=["/b"])) is None


def test_no_build_yet_is_stale(tmp_path):
    assert images.cached_build(str(tmp_path), "web", Recipe(args=["/a"])) is None
