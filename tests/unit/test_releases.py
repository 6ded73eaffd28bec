"""An app's releases on disk: what a deploy may ask, release.json, the secret store, and
the overlay a release puts on its plan."""

import json
import os
import stat

import pytest

from tests.conftest import requires_root
from vzslave import releases
from vzslave.errors import BadNameError, BadRequestError
from vzslave.releases import Release

SECRET = "hunter2-s3cr3t"


def release(layout, number=1, **fields):
    values = dict(app="web", number=number,
                  directory=releases.release_dir(layout, "web", number), image="a.tgz",
                  sha256="ab" * 32, created=1600000000.5, env={}, secrets=[], volumes={},
                  health=None, release_command=None, options={})
    values.update(fields)
    return Release(**values)


def published(layout, number, name=None):
    """A release directory with its release.json, as a deploy leaves it."""
    directory = os.path.join(releases.releases_dir(layout, "web"), name or str(number))
    os.makedirs(directory)
    releases.write(release(layout, number, directory=directory))
    return directory


def plan_of(tmp_path, env=None, uid=4242, gid=4243):
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir(exist_ok=True)
    return {"rootfs": str(rootfs), "mounts": [],
            "process": {"env": list(env or ["PATH=/bin"]), "uid": uid, "gid": gid}}


def refusal(check, *args):
    with pytest.raises(BadRequestError) as raised:
        check(*args)
    return raised.value


# -- check_env ----------------------------------------------------------------------------


def test_environment_names_of_letters_digits_and_underscores_are_accepted():
    assert releases.check_env({"A_1": "x", "_b": "", "Z9": "y"}) == {
        "A_1": "x", "_b": "", "Z9": "y"}


@pytest.mark.parametrize("name", ["1BAD", "A-B", "", "A B", "A=B", "É"])
def test_a_name_that_is_no_environment_name_is_refused(name):
    assert "not an environment variable name" in refusal(releases.check_env,
                                                         {name: "x"}).message


@pytest.mark.parametrize("value", [1, None, ["x"], b"x"])
def test_a_value_that_is_not_a_string_is_refused(value):
    assert refusal(releases.check_env, {"A": value}).details == {"argument": "env",
                                                                 "name": "A"}


def test_a_value_with_a_nul_byte_is_refused():
    refusal(releases.check_env, {"A": "a\0b"})


def test_a_value_over_the_size_limit_is_refused():
    refusal(releases.check_env, {"A": "x" * (releases.MAX_VALUE + 1)})


def test_a_value_of_exactly_the_size_limit_is_accepted():
    assert releases.check_env({"A": "x" * releases.MAX_VALUE})


def test_a_value_is_measured_in_bytes_not_characters():
    refusal(releases.check_env, {"A": "é" * (releases.MAX_VALUE // 2 + 1)})


@pytest.mark.parametrize("value", [SECRET + "\0", SECRET * 20000])
def test_a_refused_value_is_never_in_the_message(value):
    error = refusal(releases.check_env, {"TOKEN": value}, "secrets")
    assert SECRET not in error.message and SECRET not in repr(error.details)
    assert "TOKEN" in error.message


def test_the_message_names_what_was_checked():
    assert refusal(releases.check_env, {"1X": ""}, "secrets").message.startswith("secrets:")


def test_env_that_is_not_a_map_is_refused():
    refusal(releases.check_env, ["A=1"])


def test_more_entries_than_the_limit_are_refused():
    env = {"A{}".format(n): "" for n in range(releases.MAX_VARIABLES + 1)}
    assert "at most" in refusal(releases.check_env, env).message


# -- check_volumes --------------------------------------------------------------------------


def test_volume_paths_are_normalised():
    assert releases.check_volumes({"data": "//srv/./data/", "logs": "/var/log"}) == {
        "data": "/srv/data", "logs": "/var/log"}


@pytest.mark.parametrize("path", ["data", "./data", "", "srv/data"])
def test_a_relative_volume_path_is_refused(path):
    refusal(releases.check_volumes, {"data": path})


@pytest.mark.parametrize("path", ["/srv/../etc", "/..", "/srv/data/.."])
def test_a_volume_path_with_dotdot_is_refused(path):
    refusal(releases.check_volumes, {"data": path})


@pytest.mark.parametrize("path", ["/", "//", "/./", "/."])
def test_the_root_itself_is_no_volume_path(path):
    refusal(releases.check_volumes, {"data": path})


@pytest.mark.parametrize("path", ["/srv\0/x", 5, None])
def test_a_volume_path_that_is_no_clean_string_is_refused(path):
    refusal(releases.check_volumes, {"data": path})


def test_two_volumes_on_the_same_path_are_refused_once_normalised():
    error = refusal(releases.check_volumes, {"a": "/data/", "b": "/data"})
    assert "/data" in error.message and error.details["name"] == "b"


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden", "x" * 65])
def test_a_bad_volume_name_is_refused(name):
    with pytest.raises(BadNameError):
        releases.check_volumes({name: "/data"})


def test_volumes_that_are_not_a_map_are_refused():
    refusal(releases.check_volumes, ["data:/data"])


def test_more_volumes_than_the_limit_are_refused():
    volumes = {"v{}".format(n): "/v{}".format(n) for n in range(releases.MAX_VOLUMES + 1)}
    refusal(releases.check_volumes, volumes)


# -- check_command and check_keep -----------------------------------------------------------


def test_a_command_is_an_argv_list_copied():
    argv = ["/bin/migrate", "--all", ""]
    checked = releases.check_command(argv, "release")
    assert checked == argv and checked is not argv


@pytest.mark.parametrize("argv", [[], "migrate --all", ["", "x"], ["a", 1], ["a\0b"], None,
                                  ["x"] * (releases.MAX_ARGS + 1)])
def test_a_command_that_is_no_argv_is_refused(argv):
    assert refusal(releases.check_command, argv, "release").details == {"argument": "release"}


@pytest.mark.parametrize("keep", [1, 3, releases.MAX_KEEP])
def test_keep_from_one_to_the_maximum_is_accepted(keep):
    assert releases.check_keep(keep) == keep


@pytest.mark.parametrize("keep", [0, -1, releases.MAX_KEEP + 1, True, "3", 2.0, None])
def test_keep_outside_the_range_or_not_a_whole_number_is_refused(keep):
    refusal(releases.check_keep, keep)


# -- numbers, read and write ------------------------------------------------------------------


def test_an_app_without_releases_has_no_numbers(layout):
    assert releases.numbers(layout, "web") == []


def test_numbers_lists_the_complete_releases_newest_first(layout):
    for number in (1, 2, 10):
        published(layout, number)
    assert releases.numbers(layout, "web") == [10, 2, 1]


def test_an_unpack_under_way_is_no_release(layout):
    published(layout, 1)
    published(layout, 3, name=".3.123")
    assert releases.numbers(layout, "web") == [1]


def test_a_directory_without_release_json_is_no_release(layout):
    published(layout, 1)
    os.makedirs(releases.release_dir(layout, "web", 2))
    assert releases.numbers(layout, "web") == [1]


@pytest.mark.parametrize("name", ["05", "x", "+4", "-1"])
def test_a_directory_not_named_by_a_plain_number_is_no_release(layout, name):
    published(layout, 1)
    published(layout, 5, name=name)
    assert releases.numbers(layout, "web") == [1]


def test_a_release_reads_back_as_written(layout):
    written = release(layout, 7, env={"A": "1"}, secrets=["TOKEN"], volumes={"d": "/d"},
                      health={"tcp": 80, "timeout": 30.0}, release_command=["migrate"],
                      options={"runtime": "builtin", "log_max": 5})
    os.makedirs(written.directory)
    releases.write(written)
    assert releases.read(written.directory) == written


def test_release_json_is_private_to_root(layout):
    directory = published(layout, 1)
    mode = os.stat(os.path.join(directory, releases.RELEASE)).st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_release_json_holds_secret_names_sorted_and_never_their_values(layout):
    written = release(layout, secrets=["ZED", "TOKEN"])
    os.makedirs(written.directory)
    releases.write(written)
    releases.write_secrets(layout, "web", 1, {"TOKEN": SECRET, "ZED": SECRET})
    with open(os.path.join(written.directory, releases.RELEASE), "rb") as source:
        data = source.read()
    assert SECRET.encode() not in data
    assert json.loads(data)["secrets"] == ["TOKEN", "ZED"]


def test_a_directory_without_release_json_reads_as_none(tmp_path):
    assert releases.read(str(tmp_path)) is None


@pytest.mark.parametrize("data", [b"{half", b"[]", b'{"app": "web"}', b"\xff"])
def test_an_unreadable_release_json_reads_as_none(tmp_path, data):
    (tmp_path / releases.RELEASE).write_bytes(data)
    assert releases.read(str(tmp_path)) is None


def test_app_json_reads_back_as_written(layout):
    releases.write_app(layout, "web", {"next": 4, "current": 3, "keep": 2})
    assert releases.read_app(layout, "web") == {"next": 4, "current": 3, "keep": 2}


@pytest.mark.parametrize("data", [None, b"{half", b"[1, 2]"])
def test_a_missing_or_unreadable_app_json_reads_as_empty(layout, data):
    if data is not None:
        os.makedirs(layout.app_dir("web"))
        with open(os.path.join(layout.app_dir("web"), releases.APP), "wb") as out:
            out.write(data)
    assert releases.read_app(layout, "web") == {}


# -- the secret store -----------------------------------------------------------------------


def test_secrets_are_stored_as_sorted_nul_ended_entries(layout):
    releases.write_secrets(layout, "web", 2, {"ZED": "z=1", "TOKEN": SECRET})
    with open(releases.secret_file(layout, "web", 2), "rb") as source:
        assert source.read() == b"TOKEN=" + SECRET.encode() + b"\0ZED=z=1\0"


def test_the_secret_file_and_its_directory_are_private_to_root(layout):
    releases.write_secrets(layout, "web", 2, {"TOKEN": SECRET})
    path = releases.secret_file(layout, "web", 2)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700


def test_nothing_is_written_without_secrets(layout):
    releases.write_secrets(layout, "web", 2, {})
    assert not os.path.exists(os.path.join(layout.secrets, "web"))


# -- the overlay ----------------------------------------------------------------------------


def test_release_env_replaces_the_image_variable_of_the_same_name(layout, tmp_path):
    plan = plan_of(tmp_path, env=["PATH=/bin", "MODE=image", "MODEX=kept"])
    releases.apply_overlay(plan, release(layout, env={"MODE": "release", "NEW": "1"}), layout)
    assert plan["process"]["env"] == ["PATH=/bin", "MODEX=kept", "MODE=release", "NEW=1"]


def test_without_release_env_the_image_env_stays(layout, tmp_path):
    plan = plan_of(tmp_path, env=["PATH=/bin", "A=1"])
    releases.apply_overlay(plan, release(layout), layout)
    assert plan["process"]["env"] == ["PATH=/bin", "A=1"]


def test_each_volume_becomes_a_bind_mount_from_the_volume_store(layout, tmp_path):
    plan = plan_of(tmp_path)
    releases.apply_overlay(plan, release(layout, volumes={"data": "/srv/data"}), layout)
    [mount] = plan["mounts"]
    assert (mount["destination"], mount["source"], mount["type"], mount["bind"]) == (
        "/srv/data", os.path.join(layout.volumes, "web", "data"), "bind", True)


def test_volume_mounts_come_after_the_image_mounts_sorted_by_name(layout, tmp_path):
    plan = plan_of(tmp_path)
    plan["mounts"].append({"destination": "/proc"})
    releases.apply_overlay(plan, release(layout, volumes={"b": "/b", "a": "/a"}), layout)
    assert [m["destination"] for m in plan["mounts"]] == ["/proc", "/a", "/b"]


def test_a_release_with_secrets_names_its_secret_file_on_the_plan(layout, tmp_path):
    plan = plan_of(tmp_path)
    releases.apply_overlay(plan, release(layout, 4, secrets=["TOKEN"]), layout)
    assert plan["secrets"] == os.path.join(layout.secrets, "web", "4")


def test_a_release_without_secrets_puts_no_secret_file_on_the_plan(layout, tmp_path):
    plan = plan_of(tmp_path)
    releases.apply_overlay(plan, release(layout), layout)
    assert "secrets" not in plan


# -- volumes --------------------------------------------------------------------------------


def test_make_volumes_creates_the_mount_point_in_the_rootfs(layout, tmp_path):
    plan = plan_of(tmp_path, uid=os.getuid(), gid=os.getgid())
    releases.make_volumes(layout, release(layout, volumes={"data": "/srv/data"}), plan)
    assert os.path.isdir(os.path.join(plan["rootfs"], "srv", "data"))


@requires_root
def test_a_new_volume_is_owned_by_the_containers_user(layout, tmp_path):
    plan = plan_of(tmp_path, uid=4242, gid=4243)
    releases.make_volumes(layout, release(layout, volumes={"data": "/data"}), plan)
    info = os.stat(releases.volume_dir(layout, "web", "data"))
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (4242, 4243, 0o755)


def test_an_existing_volume_keeps_its_data(layout, tmp_path):
    directory = releases.volume_dir(layout, "web", "data")
    os.makedirs(directory)
    with open(os.path.join(directory, "db"), "wb") as out:
        out.write(b"rows")
    plan = plan_of(tmp_path, uid=os.getuid(), gid=os.getgid())
    releases.make_volumes(layout, release(layout, volumes={"data": "/data"}), plan)
    assert os.listdir(directory) == ["db"]


def test_a_staging_volume_left_by_a_killed_deploy_is_replaced(layout, tmp_path):
    directory = releases.volume_dir(layout, "web", "data")
    staging = os.path.join(os.path.dirname(directory), ".data.new")
    os.makedirs(staging + "/junk")
    plan = plan_of(tmp_path, uid=os.getuid(), gid=os.getgid())
    releases.make_volumes(layout, release(layout, volumes={"data": "/data"}), plan)
    assert os.listdir(directory) == [] and not os.path.exists(staging)


@pytest.mark.parametrize("path", ["/link", "/link/data"])
def test_a_volume_path_through_a_symlink_in_the_rootfs_is_refused(layout, tmp_path, path):
    plan = plan_of(tmp_path, uid=os.getuid(), gid=os.getgid())
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(str(outside), os.path.join(plan["rootfs"], "link"))
    with pytest.raises(BadRequestError) as raised:
        releases.make_volumes(layout, release(layout, volumes={"data": path}), plan)
    assert raised.value.details == {"argument": "volumes", "name": "data"}
    assert os.listdir(str(outside)) == []
    assert not os.path.exists(releases.volume_dir(layout, "web", "data"))


def test_a_volume_path_onto_a_file_in_the_rootfs_is_refused(layout, tmp_path):
    plan = plan_of(tmp_path, uid=os.getuid(), gid=os.getgid())
    with open(os.path.join(plan["rootfs"], "data"), "wb"):
        pass
    with pytest.raises(BadRequestError):
        releases.make_volumes(layout, release(layout, volumes={"data": "/data"}), plan)


def test_a_volume_named_like_another_ones_staging_directory_keeps_its_data(layout, tmp_path):
    volumes = {"data": "/a", "data.new": "/b"}
    try:
        releases.check_volumes(volumes)
    except (BadRequestError, BadNameError):
        return  # refused up front: no clash possible
    kept = releases.volume_dir(layout, "web", "data.new")
    os.makedirs(kept)
    with open(os.path.join(kept, "db"), "wb") as out:
        out.write(b"rows")
    plan = plan_of(tmp_path, uid=os.getuid(), gid=os.getgid())
    releases.make_volumes(layout, release(layout, volumes=volumes), plan)
    assert os.listdir(kept) == ["db"]


def test_a_volume_inside_another_is_mounted_after_it(layout, tmp_path):
    volumes = {"a": "/data/sub", "b": "/data"}
    try:
        releases.check_volumes(volumes)
    except BadRequestError:
        return  # nested volumes refused up front: nothing hidden
    plan = plan_of(tmp_path)
    releases.apply_overlay(plan, release(layout, volumes=volumes), layout)
    assert [m["destination"] for m in plan["mounts"]] == ["/data", "/data/sub"]
