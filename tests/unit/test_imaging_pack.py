"""vzmaster.imaging.pack: reproducible image tarballs, and reading them back."""

import io
import json
import lzma
import os
import socket
import stat
import tarfile

import pytest
import zstandard

from tests import tarballs as tb
from vzmaster.imaging import pack
from vzmaster.imaging.errors import BuildError

CONFIG = {
    "ociVersion": "1.0.2",
    "process": {"user": {"uid": 65534, "gid": 65534}, "args": ["/bin/busybox", "httpd", "-f"],
                "env": ["PATH=/bin", "GREETING=hello world"], "cwd": "/www"},
    "root": {"path": "rootfs", "readonly": True},
    "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
               {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
               {"destination": "/etc/hosts", "source": "/etc/hosts",
                "options": ["rbind", "ro"]}],
}
LIB = bytes(range(256)) * 40

# (kind, path in the rootfs, data / target, mode)
TREE = [
    ("dir", "bin", None, 0o755),
    ("file", "bin/busybox", b"\x7fELF not really", 0o755),
    ("symlink", "bin/sh", "busybox", None),
    ("dir", "etc", None, 0o755),
    ("file", "etc/passwd", b"root:x:0:0::/:/bin/sh\n", 0o644),
    ("hardlink", "etc/passwd-", "etc/passwd", None),
    ("file", "etc/shadow", b"root:*:1::::::\n", 0o600),
    ("dir", "tmp", None, 0o1777),
    ("dir", "usr", None, 0o755),
    ("dir", "usr/lib", None, 0o755),
    ("file", "usr/lib/libz.so.1.2.13", LIB, 0o644),
    ("symlink", "usr/lib/libz.so.1", "libz.so.1.2.13", None),
    ("symlink", "lib", "/usr/lib", None),
    ("dir", "www", None, 0o750),
    ("file", "www/index.html", b"<h1>hi</h1>\n", 0o644),
    ("file", "www/empty", b"", 0o644),
]
FILES = sum(kind != "dir" for kind, *_ in TREE)
CONTENT = sum(len(data) for kind, _, data, _ in TREE if kind == "file")


def make_tree(root, backwards=False, when=1_000_000_000):
    """The staging tree of TREE; ``backwards`` makes it in the reverse order, its hard
    link's inode first made at the later path, and with other timestamps."""
    os.mkdir(root)
    order = list(reversed(TREE)) if backwards else TREE
    if backwards:  # the link's inode is born at "etc/passwd-" and linked to "etc/passwd"
        order = [("hardlink", "etc/passwd", "etc/passwd-", None) if p == "etc/passwd" else
                 ("file", "etc/passwd-", TREE[4][2], 0o644) if p == "etc/passwd-" else
                 (k, p, d, m) for k, p, d, m in order]
        order.sort(key=lambda item: item[0] == "hardlink")
    for kind, rel, data, _ in order:
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if kind == "dir":
            os.makedirs(path, exist_ok=True)
        elif kind == "file":
            with open(path, "wb") as out:
                out.write(data)
        elif kind == "symlink":
            os.symlink(data, path)
        else:
            os.link(os.path.join(root, data), path)
    for _, rel, _, mode in TREE:
        if mode is not None:
            os.chmod(os.path.join(root, rel), mode)
    os.chmod(root, 0o755)
    for index, (_, rel, _, _) in enumerate(order):
        os.utime(os.path.join(root, rel), (when + index, when + 2 * index),
                 follow_symlinks=False)
    return str(root)


def tar_of(path):
    """The plain tar inside the image file ``path``."""
    with open(path, "rb") as image:
        data = image.read()
    if data.startswith(b"\x28\xb5\x2f\xfd"):
        return zstandard.ZstdDecompressor().decompress(data)
    return lzma.decompress(data)


def members(path):
    with tarfile.open(fileobj=io.BytesIO(tar_of(path))) as tar:
        return tar.getmembers()


def by_name(path):
    return {member.name: member for member in members(path)}


@pytest.fixture
def staged(tmp_path):
    return make_tree(tmp_path / "staging")


@pytest.fixture
def packed(tmp_path, staged):
    return pack.pack_bundle(CONFIG, staged, str(tmp_path / "web.tar.zst"), mtime=0)


# -- names and compressions ---------------------------------------------------


@pytest.mark.parametrize("name, compression", [
    ("web.tar.zst", "zst"), ("web.tzst", "zst"), ("out/web.TXZ", "xz"), ("web.tar.xz", "xz")])
def test_the_compression_follows_the_image_file_suffix(name, compression):
    assert pack.compression_for(name) == compression


@pytest.mark.parametrize("name", ["web.tar.gz", "web.tar", "web.zip", "web"])
def test_an_unknown_suffix_is_refused_naming_the_known_ones(name):
    with pytest.raises(BuildError, match=r"\.tar\.zst.*\.txz"):
        pack.compression_for(name)


def test_an_unknown_compression_is_refused(tmp_path, staged):
    with pytest.raises(BuildError, match="unknown compression 'gz'"):
        pack.pack_bundle(CONFIG, staged, str(tmp_path / "web.tar.gz"), compression="gz")


# -- reproducibility ----------------------------------------------------------


@pytest.mark.parametrize("suffix", [".tar.zst", ".txz"])
def test_the_same_tree_packs_to_the_same_bytes_however_it_was_made(tmp_path, staged, suffix):
    again = make_tree(tmp_path / "again", backwards=True, when=1_700_000_000)
    first = pack.pack_bundle(CONFIG, staged, str(tmp_path / ("a" + suffix)))
    second = pack.pack_bundle(CONFIG, staged, str(tmp_path / ("b" + suffix)))
    third = pack.pack_bundle(CONFIG, again, str(tmp_path / ("c" + suffix)))
    assert first.sha256 == second.sha256 == third.sha256
    assert (first.size, first.files, first.content_bytes) == \
        (third.size, third.files, third.content_bytes)


def test_zstd_gives_the_same_bytes_with_any_number_of_worker_threads(tmp_path, monkeypatch):
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    with open(rootfs / "big", "wb") as big:  # sparse: 70 MB, several zstd jobs, no disk
        big.truncate(70_000_000)
    digests = set()
    for threads in (1, 3):
        monkeypatch.setattr(pack, "ZSTD_THREADS", threads)
        out = tmp_path / "{}.tar.zst".format(threads)
        digests.add(pack.pack_bundle(CONFIG, str(rootfs), str(out)).sha256)
    assert len(digests) == 1


def test_the_result_describes_the_file_written(tmp_path, packed):
    import hashlib
    with open(packed.path, "rb") as image:
        data = image.read()
    assert packed.path == str(tmp_path / "web.tar.zst")
    assert (packed.sha256, packed.size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert (packed.files, packed.content_bytes) == (FILES, CONTENT)


def test_source_date_epoch_sets_every_mtime(tmp_path, staged, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    result = pack.pack_bundle(CONFIG, staged, str(tmp_path / "web.tar.zst"))
    assert {member.mtime for member in members(result.path)} == {1700000000}


def test_without_source_date_epoch_every_mtime_is_zero(tmp_path, staged, monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    result = pack.pack_bundle(CONFIG, staged, str(tmp_path / "web.tar.zst"))
    assert {member.mtime for member in members(result.path)} == {0}


def test_an_explicit_mtime_wins_over_source_date_epoch(tmp_path, staged, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    result = pack.pack_bundle(CONFIG, staged, str(tmp_path / "web.tar.zst"), mtime=42)
    assert {member.mtime for member in members(result.path)} == {42}


def test_a_malformed_source_date_epoch_is_an_error(tmp_path, staged, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(BuildError, match="SOURCE_DATE_EPOCH='yesterday'"):
        pack.pack_bundle(CONFIG, staged, str(tmp_path / "web.tar.zst"))
    assert os.listdir(tmp_path) == ["staging"]


# -- the members --------------------------------------------------------------


def test_config_json_comes_first_then_the_tree_in_path_order(packed):
    names = [member.name for member in members(packed.path)]
    assert names[0] == "config.json"
    assert names[1:] == ["rootfs"] + ["rootfs/" + rel for rel in sorted(
        (rel for _, rel, _, _ in TREE), key=lambda rel: rel.split("/"))]


def test_config_json_is_the_config_indented_in_its_own_key_order(packed):
    with tarfile.open(fileobj=io.BytesIO(tar_of(packed.path))) as tar:
        text = tar.extractfile("config.json").read().decode()
    assert text == json.dumps(CONFIG, indent=2) + "\n"
    assert list(json.loads(text)) == ["ociVersion", "process", "root", "mounts"]


def test_owners_are_the_staging_files_numbers_without_names(packed, staged):
    found = by_name(packed.path)
    for _, rel, _, _ in TREE:
        st = os.lstat(os.path.join(staged, rel))
        member = found["rootfs/" + rel]
        assert (member.uid, member.gid, member.uname, member.gname) == \
            (st.st_uid, st.st_gid, "", "")


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_the_building_users_own_files_are_roots_in_the_image(tmp_path, staged, monkeypatch):
    os.chown(os.path.join(staged, "etc/passwd"), 4242, 4343)
    os.chown(os.path.join(staged, "etc/shadow"), 4242, 50)
    monkeypatch.setattr(pack.os, "geteuid", lambda: 4242)  # as if user 4242 built it
    monkeypatch.setattr(pack.os, "getegid", lambda: 4343)
    found = by_name(pack.pack_bundle(CONFIG, staged, str(tmp_path / "web.tar.zst")).path)
    assert (found["rootfs/etc/passwd"].uid, found["rootfs/etc/passwd"].gid) == (0, 0)
    assert (found["rootfs/etc/shadow"].uid, found["rootfs/etc/shadow"].gid) == (0, 50)
    assert (found["rootfs/bin"].uid, found["rootfs/bin"].gid) == (0, 0)  # root's stay root's


def test_modes_are_the_staging_files_modes(packed):
    found = by_name(packed.path)
    for kind, rel, _, mode in TREE:
        if kind in ("dir", "file"):
            assert found["rootfs/" + rel].mode == mode, rel
    assert found["rootfs"].mode == 0o755


def test_no_member_has_an_extended_header_unless_it_needs_one(tmp_path, staged):
    long_name = "a" * 120
    with open(os.path.join(staged, "www", long_name), "wb"):
        pass
    result = pack.pack_bundle(CONFIG, staged, str(tmp_path / "web.tar.zst"), mtime=1234)
    raw = tar_of(result.path)
    assert raw.count(b"@PaxHeader") == 1
    assert b"mtime=" not in raw and b"atime=" not in raw and b"ctime=" not in raw
    headers = {m.name: m.pax_headers for m in members(result.path) if m.pax_headers}
    assert headers == {"rootfs/www/" + long_name: {"path": "rootfs/www/" + long_name}}


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_an_owner_too_big_for_ustar_gets_an_extended_header(tmp_path, staged):
    os.lchown(os.path.join(staged, "www/empty"), 3_000_000, 3_000_001)
    result = pack.pack_bundle(CONFIG, staged, str(tmp_path / "web.tar.zst"))
    member = by_name(result.path)["rootfs/www/empty"]
    assert (member.uid, member.gid) == (3_000_000, 3_000_001)
    assert member.pax_headers == {"uid": "3000000", "gid": "3000001"}


def test_a_hard_link_becomes_a_link_to_its_first_path(packed):
    member = by_name(packed.path)["rootfs/etc/passwd-"]
    assert member.type == tarfile.LNKTYPE
    assert (member.linkname, member.size) == ("rootfs/etc/passwd", 0)
    assert by_name(packed.path)["rootfs/etc/passwd"].isreg()


def test_a_symlink_stays_a_symlink_with_its_target_verbatim(packed):
    found = by_name(packed.path)
    assert found["rootfs/lib"].issym() and found["rootfs/lib"].linkname == "/usr/lib"
    assert found["rootfs/bin/sh"].issym() and found["rootfs/bin/sh"].linkname == "busybox"


def test_a_fifo_is_left_out_as_the_node_would_refuse_it(tmp_path, staged):
    os.mkfifo(os.path.join(staged, "tmp/pipe"))
    result = pack.pack_bundle(CONFIG, staged, str(tmp_path / "web.tar.zst"))
    assert "rootfs/tmp/pipe" not in by_name(result.path)
    assert result.files == FILES


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_a_device_node_is_left_out_as_the_runtimes_make_dev(tmp_path, staged):
    os.mknod(os.path.join(staged, "null"), stat.S_IFCHR | 0o666, os.makedev(1, 3))
    result = pack.pack_bundle(CONFIG, staged, str(tmp_path / "web.tar.zst"))
    assert "rootfs/null" not in by_name(result.path)


def test_a_socket_is_left_out(tmp_path, staged, monkeypatch):
    monkeypatch.chdir(os.path.join(staged, "tmp"))  # a short name: sun_path holds 108 bytes
    with socket.socket(socket.AF_UNIX) as server:
        server.bind("sock")
        result = pack.pack_bundle(CONFIG, staged, str(tmp_path / "web.tar.zst"))
    assert "rootfs/tmp/sock" not in by_name(result.path)
    assert result.files == FILES


def test_the_rootfs_is_packed_under_the_name_root_path_gives(tmp_path, staged):
    config = dict(CONFIG, root={"path": "./fs/"})
    result = pack.pack_bundle(config, staged, str(tmp_path / "web.tar.zst"))
    assert {member.name.split("/")[0] for member in members(result.path)} == {"config.json",
                                                                               "fs"}


@pytest.mark.parametrize("root", [{}, {"path": "/abs"}, {"path": "a/b"}, {"path": ".."}])
def test_a_root_path_that_cannot_name_the_rootfs_is_refused(tmp_path, staged, root):
    with pytest.raises(BuildError, match="root.path"):
        pack.pack_bundle(dict(CONFIG, root=root), staged, str(tmp_path / "web.tar.zst"))


def test_zstd_frames_carry_the_content_size_and_a_checksum(packed):
    with open(packed.path, "rb") as image:
        params = zstandard.get_frame_parameters(image.read(18))
    assert params.content_size == len(tar_of(packed.path))
    assert params.has_checksum


def test_an_xz_image_decompresses_within_16_mib(tmp_path, staged):
    result = pack.pack_bundle(CONFIG, staged, str(tmp_path / "web.txz"))
    with open(result.path, "rb") as image:
        data = lzma.LZMADecompressor(memlimit=16 << 20).decompress(image.read())
    assert data[:len(b"config.json")] == b"config.json"


# -- the node accepts it ------------------------------------------------------


def tree_of(root):
    """Every path under ``root``: kind, mode, owner and data or target."""
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as source:
                    content = source.read()
            else:
                content = None
            found[os.path.relpath(path, root)] = (stat.S_IFMT(st.st_mode),
                                                  stat.S_IMODE(st.st_mode), st.st_uid,
                                                  st.st_gid, content)
    return found


@pytest.mark.parametrize("suffix, fmt", [(".tar.zst", "tar.zst"), (".txz", "tar.xz")])
def test_vzslave_extracts_the_image_to_the_same_tree(tmp_path, staged, suffix, fmt):
    result = pack.pack_bundle(CONFIG, staged, str(tmp_path / ("web" + suffix)))
    with open(result.path, "rb") as image:
        extracted = tb.extract_image(image.read(), tmp_path / "bundle", fmt=fmt)
    unpacked = tmp_path / "bundle" / "rootfs"
    assert extracted.root_dir == "rootfs"
    assert tree_of(unpacked) == tree_of(staged)
    assert os.lstat(unpacked / "etc/passwd").st_ino == os.lstat(unpacked / "etc/passwd-").st_ino
    with open(tmp_path / "bundle" / "config.json") as config:
        assert json.load(config) == CONFIG


# -- failures leave nothing ---------------------------------------------------


def test_a_failure_while_compressing_leaves_no_output_and_no_temp(tmp_path, staged,
                                                                   monkeypatch):
    def broken(source, size, sink):
        sink.write(b"half an image")
        raise RuntimeError("compressor died")

    monkeypatch.setitem(pack._COMPRESSORS, "zst", broken)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(RuntimeError, match="compressor died"):
        pack.pack_bundle(CONFIG, staged, str(out / "web.tar.zst"))
    assert os.listdir(out) == []


def test_an_unreadable_staging_file_is_named_and_leaves_no_output(tmp_path, staged,
                                                                  monkeypatch):
    real_open = os.open

    def refusing_open(path, flags, *args, **kwargs):
        if str(path).endswith("shadow"):
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, flags, *args, **kwargs)

    # As root a chmod 000 file is still readable, so the refusal is injected.
    monkeypatch.setattr(pack.os, "open", refusing_open)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(BuildError, match=r"cannot read /etc/shadow of the rootfs .*denied"):
        pack.pack_bundle(CONFIG, staged, str(out / "web.tar.zst"))
    assert os.listdir(out) == []


def test_a_failed_pack_leaves_an_older_image_as_it_was(tmp_path, staged, monkeypatch):
    output = tmp_path / "web.tar.zst"
    output.write_bytes(b"the old image")

    def broken(source, size, sink):
        raise BuildError("compressor died")

    monkeypatch.setitem(pack._COMPRESSORS, "zst", broken)
    with pytest.raises(BuildError):
        pack.pack_bundle(CONFIG, staged, str(output))
    assert output.read_bytes() == b"the old image"
    assert sorted(os.listdir(tmp_path)) == ["staging", "web.tar.zst"]


def test_the_image_file_mode_follows_the_umask(tmp_path, staged):
    old = os.umask(0o027)
    try:
        result = pack.pack_bundle(CONFIG, staged, str(tmp_path / "web.tar.zst"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(result.path).st_mode) == 0o640


def test_a_config_that_is_not_json_is_refused(tmp_path, staged):
    with pytest.raises(BuildError, match="cannot be written as JSON"):
        pack.pack_bundle(dict(CONFIG, annotations={"x": float("nan")}), staged,
                         str(tmp_path / "web.tar.zst"))


# -- inspecting ---------------------------------------------------------------


def test_inspect_reports_what_the_packed_image_holds(packed):
    summary = pack.inspect_image(packed.path)
    assert summary == pack.ImageSummary(
        path=packed.path, sha256=packed.sha256, size=packed.size, compression="zst",
        files=FILES, content_bytes=CONTENT, args=["/bin/busybox", "httpd", "-f"],
        env=["PATH=/bin", "GREETING=hello world"], cwd="/www", user="65534:65534",
        readonly=True, mounts=["proc /proc", "tmpfs /dev", "bind /etc/hosts"], root="rootfs")


@pytest.mark.parametrize("fmt, compression", [("tar", "tar"), ("tar.gz", "gz"),
                                              ("tar.xz", "xz"), ("tar.zst", "zst")])
def test_inspect_tells_the_format_by_content_not_by_name(tmp_path, fmt, compression):
    image = tmp_path / "image.bin"
    image.write_bytes(tb.make_tar(tb.bundle(tb.file("rootfs/a", b"12345")), fmt=fmt))
    summary = pack.inspect_image(str(image))
    assert (summary.compression, summary.files, summary.content_bytes) == (compression, 1, 5)
    assert summary.args == ["/bin/sh"]


def test_inspect_of_a_file_that_is_not_a_tarball_is_an_error(tmp_path):
    image = tmp_path / "web.tar.zst"
    image.write_bytes(b"just some text\n" * 100)
    with pytest.raises(BuildError, match="not a tarball"):
        pack.inspect_image(str(image))


def test_inspect_of_a_damaged_image_is_an_error(tmp_path, packed):
    with open(packed.path, "rb") as source:
        data = source.read()
    image = tmp_path / "cut.tar.zst"
    image.write_bytes(data[:len(data) // 2])
    with pytest.raises(BuildError, match="damaged"):
        pack.inspect_image(str(image))


def test_inspect_of_a_tarball_without_config_json_is_an_error(tmp_path):
    image = tmp_path / "web.tar"
    image.write_bytes(tb.make_tar([tb.directory("rootfs"), tb.file("rootfs/a")]))
    with pytest.raises(BuildError, match="no config.json"):
        pack.inspect_image(str(image))


def test_inspect_of_a_config_json_that_is_not_json_is_an_error(tmp_path):
    image = tmp_path / "web.tar"
    image.write_bytes(tb.make_tar(tb.bundle(config=b"{not json")))
    with pytest.raises(BuildError, match="not valid JSON"):
        pack.inspect_image(str(image))


def test_inspect_of_a_missing_file_is_an_error(tmp_path):
    with pytest.raises(BuildError, match="cannot read the image"):
        pack.inspect_image(str(tmp_path / "nothing.tar.zst"))


def test_the_summary_reads_as_labelled_lines():
    summary = pack.ImageSummary(
        path="web.tar.zst", sha256="ab12" * 16, size=1258291, compression="zst", files=42,
        content_bytes=3565158, args=["/bin/busybox", "httpd", "-f", "-h", "/my www"],
        env=["PATH=/bin", "A=b c"], cwd="/", user="65534:65534", readonly=True,
        mounts=["proc /proc", "tmpfs /dev"], root="rootfs")
    assert pack.render_summary(summary) == (
        "image   web.tar.zst (zst, 1.2 MiB)\n"
        "sha256  " + "ab12" * 16 + "\n"
        "files   42 (3.4 MiB unpacked)\n"
        "args    /bin/busybox httpd -f -h '/my www'\n"
        "user    65534:65534\n"
        "cwd     /\n"
        "env     PATH=/bin\n"
        "        A=b c\n"
        "root    rootfs (read-only)\n"
        "mounts  proc /proc, tmpfs /dev\n")
