"""ldd-trace: real ELF files (this host's, and tiny ones gcc builds), ld.so as the oracle.

The oracle runs a program with LD_TRACE_LOADED_OBJECTS=1: the kernel execs it, ld.so
resolves every library as for a real run, prints where, and stops before main().
"""

import os
import shutil
import subprocess

import pytest

from vzmaster.imaging.elf import needed_files
from vzmaster.imaging.errors import BuildError

GCC = shutil.which("gcc")
needs_gcc = pytest.mark.skipif(GCC is None, reason="gcc is not installed")
LOADER = "/lib64/ld-linux-x86-64.so.2"
MAIN = "int lib_a(void);\nint main(void) { return lib_a(); }\n"


def host_ls():
    for path in ("/bin/ls", "/usr/bin/ls"):
        if os.path.exists(path):
            return path
    pytest.skip("no ls on this host")


def cc(out, code, *args, shared=False):
    """Compile ``code`` to ``out``; a shared library gets its file name as soname."""
    os.makedirs(os.path.dirname(out), exist_ok=True)
    source = out + ".c"
    with open(source, "w") as file:
        file.write(code)
    argv = [GCC, "-o", out, source, *args]
    if shared:
        argv[1:1] = ["-shared", "-fPIC", "-Wl,-soname," + os.path.basename(out)]
    subprocess.run(argv, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return out


def library(directory, name, needs=(), *args):
    """lib<name>.so.1 in ``directory``, defining <name>() which calls each of ``needs``."""
    calls = "".join(" + {}()".format(os.path.basename(dep)[3:-5]) for dep in needs)
    code = "".join("int {}(void);\n".format(os.path.basename(dep)[3:-5]) for dep in needs)
    code += "int {}(void) {{ return 0{}; }}\n".format(name, calls)
    return cc(os.path.join(str(directory), "lib{}.so.1".format(name)), code, *needs, *args,
              shared=True)


def program(path, lib, *args):
    """A program calling lib_a() from ``lib`` (a path: DT_NEEDED becomes its soname)."""
    return cc(str(path), MAIN, lib, "-Wl,--allow-shlib-undefined", *args)


def loader_trace(path):
    """(paths ld.so opened, names it did not find) for the program at ``path``."""
    done = subprocess.run([path], env={"LD_TRACE_LOADED_OBJECTS": "1"},
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)
    found, missing = set(), set()
    for line in done.stdout.splitlines():
        line = line.strip()
        if line.endswith("=> not found"):
            missing.add(line.split()[0])
        elif "=>" in line:
            opened = line.split("=>", 1)[1].rsplit("(", 1)[0].strip()
            if opened:
                found.add(os.path.normpath(opened))
        elif line.startswith("/"):
            found.add(line.split()[0])
    return found, missing


def without(paths, *programs):
    return set(paths) - set(programs)


# -- this host's programs ---------------------------------------------------------


def test_ls_gives_the_files_ldd_names_at_the_paths_ldd_shows():
    ls = host_ls()
    done = subprocess.run(["ldd", ls], stdout=subprocess.PIPE, universal_newlines=True,
                          check=True)
    expected = set()
    for line in done.stdout.splitlines():
        words = line.split()
        if "=>" in words and words[2].startswith("/"):
            expected.add(words[2])
        elif words[0].startswith("/"):
            expected.add(words[0])
    assert without(needed_files([ls]), ls) == expected


def test_ls_includes_the_loader_by_its_interp_path_and_libc_and_libselinux():
    ls = host_ls()
    found = needed_files([ls])
    assert LOADER in found
    assert {"libc.so.6", "libselinux.so.1"} <= {os.path.basename(p) for p in found}


def test_the_program_is_returned_as_given_not_as_its_realpath():
    assert "/bin/ls" in needed_files(["/bin/ls"])


def test_a_bare_name_is_looked_up_in_path():
    assert "/usr/bin/ls" in needed_files(["ls"])


def test_a_static_program_gives_only_itself():
    if not os.path.exists("/bin/busybox"):
        pytest.skip("no /bin/busybox")
    assert needed_files(["/bin/busybox"]) == ["/bin/busybox"]


def test_the_result_is_sorted_and_each_file_once():
    found = needed_files(["/bin/ls", "/bin/ls", "ls"])
    assert found == sorted(set(found))


# -- programs gcc builds ------------------------------------------------------------


@needs_gcc
def test_a_runpath_with_origin_finds_the_library_beside_the_program(tmp_path):
    lib = library(tmp_path / "lib", "lib_a")
    app = program(tmp_path / "bin" / "app", lib, "-Wl,-rpath,$ORIGIN/../lib",
                  "-Wl,--enable-new-dtags")
    found = needed_files([app])
    assert lib in found
    assert without(found, app) == loader_trace(app)[0]


@needs_gcc
def test_an_rpath_finds_the_library(tmp_path):
    lib = library(tmp_path / "deps", "lib_a")
    app = program(tmp_path / "app", lib, "-Wl,-rpath," + str(tmp_path / "deps"),
                  "-Wl,--disable-new-dtags")
    assert without(needed_files([app]), app) == loader_trace(app)[0]


@needs_gcc
def test_a_library_needs_another_found_by_the_rpath_of_the_program_that_loaded_it(tmp_path):
    deps = tmp_path / "deps"
    inner = library(deps, "inner")
    outer = library(tmp_path / "libs", "lib_a", [inner])
    app = program(tmp_path / "app", outer, "-Wl,-rpath,{}:{}".format(tmp_path / "libs", deps),
                  "-Wl,--disable-new-dtags")
    found = needed_files([app])
    assert inner in found
    assert without(found, app) == loader_trace(app)[0]


@needs_gcc
def test_a_runpath_is_not_inherited_by_the_libraries_the_program_loads(tmp_path):
    deps = tmp_path / "deps"
    inner = library(deps, "inner")
    outer = library(tmp_path / "libs", "lib_a", [inner])
    app = program(tmp_path / "app", outer, "-Wl,-rpath,{}:{}".format(tmp_path / "libs", deps),
                  "-Wl,--enable-new-dtags")
    assert loader_trace(app)[1] == {"libinner.so.1"}
    with pytest.raises(BuildError, match=r"libinner\.so\.1, needed by .*liblib_a\.so\.1"):
        needed_files([app])


@needs_gcc
def test_a_missing_library_is_named_with_the_program_that_needs_it(tmp_path):
    lib = library(tmp_path / "gone", "lib_a")
    app = program(tmp_path / "app", lib, "-Wl,-rpath," + str(tmp_path / "gone"))
    os.unlink(lib)
    with pytest.raises(BuildError) as caught:
        needed_files([app])
    message = str(caught.value)
    assert message.startswith("liblib_a.so.1, needed by {}, was not found in ".format(app))
    assert str(tmp_path / "gone") in message and "/lib/x86_64-linux-gnu" in message
    assert message.endswith("add its directory with --library-path")


@needs_gcc
def test_a_failed_lookup_returns_nothing_even_when_other_programs_resolved(tmp_path):
    lib = library(tmp_path / "gone", "lib_a")
    app = program(tmp_path / "app", lib)
    os.unlink(lib)
    with pytest.raises(BuildError):
        needed_files(["/bin/ls", app])


@needs_gcc
def test_library_path_is_searched_for_a_library_nothing_else_names(tmp_path):
    lib = library(tmp_path / "extra", "lib_a")
    app = program(tmp_path / "app", lib)
    assert lib in needed_files([app], library_path=[str(tmp_path / "extra")])


@needs_gcc
def test_the_origin_of_a_library_is_the_directory_it_was_opened_from(tmp_path):
    """When a library is reached through a symlink, ld.so does not resolve it for $ORIGIN."""
    real_dir, link_dir = tmp_path / "real", tmp_path / "link"
    inner_here = library(link_dir / "dep", "inner")
    inner_there = library(real_dir / "dep", "inner")
    outer = library(real_dir, "lib_a", [inner_there], "-Wl,-rpath,$ORIGIN/dep",
                    "-Wl,--enable-new-dtags")
    os.symlink(outer, str(link_dir / "liblib_a.so.1"))
    app = program(tmp_path / "app", outer, "-Wl,-rpath," + str(link_dir))
    found = needed_files([app])
    assert inner_here in found and inner_there not in found
    assert without(found, app) == loader_trace(app)[0]


@needs_gcc
def test_the_origin_of_the_program_is_the_directory_of_its_realpath(tmp_path):
    """When the program is run through a symlink, $ORIGIN comes from /proc/self/exe."""
    lib = library(tmp_path / "real" / "lib", "lib_a")
    app = program(tmp_path / "real" / "bin" / "app", lib, "-Wl,-rpath,$ORIGIN/../lib")
    os.makedirs(str(tmp_path / "link"))
    link = str(tmp_path / "link" / "app")
    os.symlink(app, link)
    found = needed_files([link])
    assert lib in found and link in found
    assert without(found, link) == loader_trace(link)[0]


@needs_gcc
def test_lib_in_an_rpath_expands_as_this_debian_loader_expands_it(tmp_path):
    lib = library(tmp_path / "lib" / "x86_64-linux-gnu", "lib_a")
    app = program(tmp_path / "app", lib, "-Wl,-rpath," + str(tmp_path) + "/$LIB")
    assert lib in needed_files([app])
    assert lib in loader_trace(app)[0]


@needs_gcc
def test_a_library_for_another_machine_is_stepped_over(tmp_path):
    lib = library(tmp_path / "good", "lib_a")
    os.makedirs(str(tmp_path / "other"))
    other = str(tmp_path / "other" / "liblib_a.so.1")
    with open(lib, "rb") as file:
        data = bytearray(file.read())
    data[18:20] = (183).to_bytes(2, "little")  # EM_AARCH64
    with open(other, "wb") as file:
        file.write(data)
    app = program(tmp_path / "app", lib,
                  "-Wl,-rpath,{}:{}".format(tmp_path / "other", tmp_path / "good"))
    found = needed_files([app])
    assert lib in found and other not in found
    assert without(found, app) == loader_trace(app)[0]


@needs_gcc
def test_a_file_that_is_not_elf_where_the_loader_looks_stops_the_search(tmp_path):
    lib = library(tmp_path / "good", "lib_a")
    os.makedirs(str(tmp_path / "junk"))
    junk = str(tmp_path / "junk" / "liblib_a.so.1")
    with open(junk, "w") as file:
        file.write("INPUT(-lfoo)\n")
    app = program(tmp_path / "app", lib,
                  "-Wl,-rpath,{}:{}".format(tmp_path / "junk", tmp_path / "good"))
    assert lib not in loader_trace(app)[0]
    with pytest.raises(BuildError, match="not a loadable ELF file"):
        needed_files([app])


@needs_gcc
def test_a_needed_path_with_a_slash_is_opened_as_it_is(tmp_path):
    lib = cc(str(tmp_path / "nosoname.so"), "int lib_a(void) { return 0; }",
             "-shared", "-fPIC")
    app = cc(str(tmp_path / "app"), MAIN, lib)
    found = needed_files([app])
    assert lib in found
    assert without(found, app) == loader_trace(app)[0]


@needs_gcc
def test_a_truncated_program_is_not_a_readable_elf_file(tmp_path):
    with open("/bin/ls", "rb") as file:
        head = file.read(200)
    truncated = tmp_path / "truncated"
    truncated.write_bytes(head)
    with pytest.raises(BuildError, match="is not a readable ELF file"):
        needed_files([str(truncated)])


# -- not programs -------------------------------------------------------------------


def test_a_text_file_is_not_an_elf_program(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    with pytest.raises(BuildError, match=r"notes\.txt is not an ELF program \(it starts "
                                         r"with b'hello\\n'\); ldd-trace needs"):
        needed_files([str(text)])


def test_an_empty_file_is_not_an_elf_program(tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(BuildError, match=r"empty is not an ELF program \(it is empty\)"):
        needed_files([str(empty)])


def test_a_script_brings_its_interpreter_and_its_libraries(tmp_path):
    script = tmp_path / "run.sh"
    script.write_text("#! /bin/sh -e\necho hi\n")
    found = needed_files([str(script)])
    assert {str(script), "/bin/sh", LOADER} <= set(found)
    assert "libc.so.6" in {os.path.basename(p) for p in found}


def test_a_script_run_by_env_brings_the_program_env_runs(tmp_path):
    script = tmp_path / "run"
    script.write_text("#!/usr/bin/env ls\n")
    assert {"/usr/bin/env", "/usr/bin/ls"} <= set(needed_files([str(script)]))


def test_a_missing_program_path_does_not_exist(tmp_path):
    with pytest.raises(BuildError, match="nothing-here does not exist"):
        needed_files([str(tmp_path / "nothing-here")])


def test_a_bare_name_missing_from_path_names_the_path_searched():
    with pytest.raises(BuildError, match=r"no program named 'no-such-prog-vz' in PATH "
                                         r"\(/usr/local/sbin:.*:/bin\)"):
        needed_files(["no-such-prog-vz"])


# -- sysroots -----------------------------------------------------------------------


def sysroot(tmp_path, libc_link):
    """A root with /bin/true, the loader behind an absolute link, libc as ``libc_link``."""
    root = tmp_path / "root"
    for directory in ("bin", "lib64", "lib/x86_64-linux-gnu", "etc", "store"):
        os.makedirs(str(root / directory))
    shutil.copy("/usr/bin/true", str(root / "bin" / "true"))
    loader = "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    shutil.copy(os.path.realpath(LOADER), str(root) + loader)
    os.symlink(loader, str(root) + LOADER)
    shutil.copy(os.path.realpath("/lib/x86_64-linux-gnu/libc.so.6"), str(root / "store" / "libc"))
    os.makedirs(str(root / "only-in-root"))
    os.symlink(libc_link, str(root / "only-in-root" / "libc.so.6"))
    (root / "etc" / "ld.so.conf").write_text("# comment\ninclude conf.d/*.conf\n")
    os.makedirs(str(root / "etc" / "conf.d"))
    (root / "etc" / "conf.d" / "a.conf").write_text("/only-in-root  # here\nhwcap 0 x\n")
    return str(root)


def test_absolute_links_in_a_sysroot_resolve_inside_it(tmp_path):
    root = sysroot(tmp_path, "/store/libc")
    assert needed_files(["true"], root=root) == [
        "/bin/true", LOADER, "/only-in-root/libc.so.6"]


def test_an_absolute_link_in_a_sysroot_never_reaches_the_host(tmp_path):
    root = sysroot(tmp_path, os.path.realpath("/lib/x86_64-linux-gnu/libc.so.6"))
    with pytest.raises(BuildError, match=r"libc\.so\.6, needed by /bin/true, was not found "
                                         r"under .*/root in /only-in-root, "):
        needed_files(["/bin/true"], root=root)


def test_dot_dot_in_a_sysroot_link_stops_at_its_root(tmp_path):
    root = sysroot(tmp_path, "../../../../../../../../../../store/libc")
    assert "/only-in-root/libc.so.6" in needed_files(["/bin/true"], root=root)


def test_a_program_whose_loader_is_missing_names_the_loader(tmp_path):
    root = sysroot(tmp_path, "/store/libc")
    os.unlink(os.path.join(root, "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"))
    with pytest.raises(BuildError, match="/bin/true needs the loader {}, which does not exist"
                                         .format(LOADER)):
        needed_files(["/bin/true"], root=root)
