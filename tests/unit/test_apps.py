"""Apps over a fake container store: numbered releases unpacked from real images, the
health-gated switch and its undoing, pruning, the app lock, the repair of a killed
deploy, rollback and removal. What the container store does is its own tests'."""

import os

import pytest

from tests.conftest import put, sample_image
from vzslave import fs, oneoff, releases
from vzslave.apps import Apps
from vzslave.bundles import BundleStore
from vzslave.errors import (
    BadImageError,
    BadNameError,
    BadRequestError,
    BusyError,
    HealthCheckError,
    NoSuchAppError,
    NoSuchImageError,
    NoSuchReleaseError,
    ReleaseCommandError,
)
from vzslave.health import Instance
from vzslave.images import ImageStore
from vzslave.settings import Settings
from vzslave.states import Wanted

SECRET = "hunter2-s3cr3t"
QUICK = {"min_uptime": 0}  # "running", checked once: no wait


class FakeContainers:
    """Containers as Apps uses them. A switch or stop leaves settings.json as the real
    one does (source, tree, wanted); the instance crash-loops on a release in ``broken``;
    every call is recorded."""

    def __init__(self, layout):
        self.layout = layout
        self.calls = []
        self.broken = set()  # release numbers whose instance crash-loops

    def _settings(self, name):
        return Settings.load(self.layout.container_dir(name))

    def _save(self, name, settings):
        settings.save(self.layout.container_dir(name))

    def switch(self, name, source, grace=10.0, override=False, **options):
        self.calls.append(("switch", name, int(os.path.basename(source))))
        settings = self._settings(name)
        settings.wanted = Wanted.RUNNING
        settings.source = source
        settings.placed(source, [])
        self._save(name, settings)

    def stop(self, name, grace=10.0):
        self.calls.append(("stop", name))
        settings = self._settings(name)
        settings.wanted = Wanted.STOPPED
        settings.stopped()
        self._save(name, settings)

    def detach(self, name):
        self.calls.append(("detach", name))
        settings = self._settings(name)
        settings.source = ""
        self._save(name, settings)

    def instance(self, name):
        source = self._settings(name).source
        if source and int(os.path.basename(source)) in self.broken:
            return Instance(None, 5, "crash-looping", "exit 1")
        return Instance(42, 1, "running", "")

    def status_if_any(self, name):
        return None

    def repair(self, name):
        self.calls.append(("repair", name))

    def log_limits(self, name):
        return 1 << 20, 2

    def forget(self, name):
        self.calls.append(("forget", name))
        fs.remove_tree(self.layout.container_dir(name))


@pytest.fixture
def images(layout, limits):
    store = ImageStore(layout, limits)
    for name in ("a.tgz", "b.tgz", "c.tgz"):
        put(store, name, sample_image(name.encode()))
    return store


@pytest.fixture
def bundles(layout, limits, images):
    return BundleStore(layout, limits, images)


@pytest.fixture
def containers(layout):
    return FakeContainers(layout)


@pytest.fixture
def apps(layout, images, bundles, containers):
    return Apps(layout, images, bundles, containers)


def deploy(apps, image="a.tgz", app="web", **options):
    options.setdefault("health_spec", QUICK)
    return apps.deploy(app, image, **options)


def app_json(layout, app="web"):
    return releases.read_app(layout, app)


def runs(layout, app="web"):
    """The release number the container's settings run."""
    source = Settings.load(layout.container_dir(app)).source
    return int(os.path.basename(source)) if source else None


# -- deploy ---------------------------------------------------------------------------------


def test_a_first_deploy_is_release_1_current_and_switched_to(apps, containers, layout):
    info = deploy(apps)
    assert (info.app, info.release, info.image, info.current) == ("web", 1, "a.tgz", True)
    assert containers.calls == [("switch", "web", 1)]
    assert app_json(layout) == {"next": 2, "current": 1, "keep": 3}


def test_releases_are_numbered_1_2_3(apps):
    assert [deploy(apps).release for _ in range(3)] == [1, 2, 3]


def test_the_release_is_unpacked_from_its_image_with_its_settings(apps, layout):
    deploy(apps, "b.tgz", env={"MODE": "prod"}, volumes={"data": "/srv/data/"})
    directory = releases.release_dir(layout, "web", 1)
    with open(os.path.join(directory, "rootfs", "bin", "app"), "rb") as source:
        assert source.read() == b"b.tgz"
    release = releases.read(directory)
    assert (release.image, release.env, release.volumes) == (
        "b.tgz", {"MODE": "prod"}, {"data": "/srv/data"})


def test_secrets_go_to_the_store_and_nowhere_else_in_the_app(apps, layout):
    info = deploy(apps, secrets={"TOKEN": SECRET})
    with open(releases.secret_file(layout, "web", 1), "rb") as source:
        assert source.read() == b"TOKEN=" + SECRET.encode() + b"\0"
    assert info.secrets == ["TOKEN"] and SECRET not in repr(info)
    for directory, _, files in os.walk(layout.app_dir("web")):
        for name in files:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                with open(path, "rb") as source:
                    assert SECRET.encode() not in source.read(), path


def test_a_number_is_never_reused_after_a_failed_deploy(apps, containers):
    deploy(apps)
    containers.broken.add(2)
    with pytest.raises(HealthCheckError):
        deploy(apps)
    assert deploy(apps).release == 3


def test_a_failed_health_check_switches_back_to_the_previous_release(apps, containers,
                                                                   layout):
    deploy(apps)
    containers.broken.add(2)
    with pytest.raises(HealthCheckError):
        deploy(apps, "b.tgz")
    assert containers.calls[-2:] == [("switch", "web", 2), ("switch", "web", 1)]
    assert runs(layout) == 1 and app_json(layout)["current"] == 1


def test_a_release_that_failed_its_health_check_is_dropped_with_its_secrets(
        apps, containers, layout):
    deploy(apps)
    containers.broken.add(2)
    with pytest.raises(HealthCheckError):
        deploy(apps, secrets={"TOKEN": SECRET})
    assert releases.numbers(layout, "web") == [1]
    assert not os.path.exists(releases.secret_file(layout, "web", 2))
    assert "deploying" not in app_json(layout)


def test_a_failed_health_check_says_what_was_seen_and_what_runs_again(apps, containers,
                                                                    layout):
    deploy(apps)
    containers.broken.add(2)
    with open(layout.log_file("web"), "wb") as log:
        log.write(b"booting\npanic: no database\n")
    with pytest.raises(HealthCheckError) as raised:
        deploy(apps)
    details = raised.value.details
    assert (details["release"], details["restored"]) == (2, 1)
    assert "crash-loops" in details["output"]
    assert details["log"] == "booting\npanic: no database\n"
    assert "release 1 runs again" in raised.value.message


def test_a_first_release_that_fails_its_health_check_leaves_the_app_stopped_and_detached(
        apps, containers, layout):
    containers.broken.add(1)
    with pytest.raises(HealthCheckError) as raised:
        deploy(apps)
    assert raised.value.details["restored"] is None
    assert containers.calls[-2:] == [("stop", "web"), ("detach", "web")]
    assert releases.numbers(layout, "web") == [] and runs(layout) is None


@pytest.mark.parametrize("bad", [
    {"volumes": {"data": "relative"}},
    {"volumes": {"data": "/srv/../etc"}},
    {"env": {"1BAD": "x"}},
    {"secrets": {"A-B": "x"}},
    {"health_spec": {"tcp": 0}},
    {"health_spec": {"http": "http://example.com:80/"}},
    {"release_command": "migrate --all"},
    {"keep": 0},
    {"options": {"runtime_args": "--debug"}},
])
def test_bad_arguments_are_refused_before_anything_is_written(apps, containers, layout, bad):
    with pytest.raises(BadRequestError):
        deploy(apps, **bad)
    assert not os.path.exists(layout.app_dir("web"))
    assert containers.calls == []


@pytest.mark.parametrize("bad", [{"app": "../web"}, {"image": ""},
                                 {"volumes": {"../x": "/x"}}])
def test_bad_names_are_refused_before_anything_is_written(apps, layout, bad):
    with pytest.raises(BadNameError):
        deploy(apps, **bad)
    assert os.listdir(layout.apps) == []


def test_a_missing_image_is_refused_before_anything_is_written(apps, containers, layout):
    with pytest.raises(NoSuchImageError):
        deploy(apps, "nope.tgz")
    assert os.listdir(layout.apps) == [] and containers.calls == []


def test_a_deploy_while_the_apps_lock_is_held_is_busy(apps, layout):
    with fs.exclusive_lock(os.path.join(layout.locks, "app-web.lock"), "the test"):
        with pytest.raises(BusyError):
            deploy(apps)
    assert not os.path.exists(layout.app_dir("web"))


def test_another_apps_lock_does_not_hold_a_deploy_back(apps, layout):
    with fs.exclusive_lock(os.path.join(layout.locks, "app-api.lock"), "the test"):
        assert deploy(apps).release == 1


def test_a_deploy_over_a_running_bundle_container_of_the_same_name_is_busy(apps, layout):
    Settings({"wanted": Wanted.RUNNING, "tree": "/x"}).save(layout.container_dir("web"))
    with pytest.raises(BusyError):
        deploy(apps)
    assert not os.path.exists(layout.app_dir("web"))


# -- the release command --------------------------------------------------------------------


@pytest.fixture
def one_offs(monkeypatch):
    """oneoff.run recorded; it ends as ``one_offs.outcome`` says."""
    calls = []

    def run(plan, argv, timeout, scratch, max_output=oneoff.MAX_OUTPUT):
        calls.append((plan["name"], argv))
        return run.outcome

    run.outcome = oneoff.Outcome("exit 0", 0, "migrated\n", False)
    run.calls = calls
    monkeypatch.setattr(oneoff, "run", run)
    return run


def test_the_release_command_runs_in_the_new_release_before_the_switch(apps, one_offs,
                                                                      containers):
    deploy(apps, release_command=["migrate", "--all"])
    assert one_offs.calls == [("web", ["migrate", "--all"])]
    assert containers.calls == [("switch", "web", 1)]


def test_a_failed_release_command_switches_nothing_and_drops_the_release(
        apps, one_offs, containers, layout):
    deploy(apps)
    one_offs.outcome = oneoff.Outcome("exit 2", 2, "no such table\n", False)
    with pytest.raises(ReleaseCommandError) as raised:
        deploy(apps, release_command=["migrate"])
    assert raised.value.details == {"release": 2, "exit": "exit 2",
                                    "output": "no such table\n"}
    assert containers.calls == [("switch", "web", 1)]
    assert releases.numbers(layout, "web") == [1] and app_json(layout)["current"] == 1


# -- pruning --------------------------------------------------------------------------------


def test_pruning_keeps_the_newest_keep_releases(apps, layout):
    for image in ("a.tgz", "b.tgz", "c.tgz"):
        deploy(apps, image, keep=2)
    assert releases.numbers(layout, "web") == [3, 2]


def test_pruning_removes_the_secrets_of_dropped_releases(apps, layout):
    deploy(apps, secrets={"TOKEN": SECRET}, keep=1)
    deploy(apps, secrets={"TOKEN": SECRET}, keep=1)
    assert os.listdir(os.path.join(layout.secrets, "web")) == ["2"]


def test_pruning_removes_the_images_only_dropped_releases_used(apps, images):
    for image in ("a.tgz", "b.tgz", "c.tgz"):
        deploy(apps, image, keep=2)
    assert [info.name for info in images.list()] == ["b.tgz", "c.tgz"]


def test_pruning_keeps_an_image_a_kept_release_uses(apps, images):
    for image in ("a.tgz", "a.tgz", "b.tgz"):
        deploy(apps, image, keep=2)
    assert "a.tgz" in [info.name for info in images.list()]


def test_pruning_keeps_an_image_another_apps_release_uses(apps, images):
    deploy(apps, "a.tgz", app="api")
    for image in ("a.tgz", "b.tgz"):
        deploy(apps, image, keep=1)
    assert "a.tgz" in [info.name for info in images.list()]


def test_pruning_keeps_an_image_a_bundle_uses(apps, images, bundles):
    bundles.unpack("a.tgz", "other")
    for image in ("a.tgz", "b.tgz"):
        deploy(apps, image, keep=1)
    assert "a.tgz" in [info.name for info in images.list()]


def test_pruning_keeps_an_image_uploaded_again_under_the_same_name(apps, images):
    deploy(apps, "a.tgz", keep=1)
    images.remove("a.tgz")
    put(images, "a.tgz", sample_image(b"new bytes"))
    deploy(apps, "b.tgz", keep=1)
    assert "a.tgz" in [info.name for info in images.list()]


def test_pruning_never_drops_the_current_release(apps, layout):
    deploy(apps)
    deploy(apps)
    apps.rollback("web")
    deploy(apps, keep=1)
    assert releases.numbers(layout, "web") == [3]


# -- the repair of a killed deploy ---------------------------------------------------------


def killed_while_deploying(apps, layout, containers, switched):
    """What a vzslave killed after publishing release 2 leaves (switched to it or not)."""
    deploy(apps)
    state = app_json(layout)
    state.update(next=3, deploying=2)
    releases.write_app(layout, "web", state)
    directory = releases.release_dir(layout, "web", 2)
    os.makedirs(directory)
    releases.write(releases.read(releases.release_dir(layout, "web", 1))._replace(
        number=2, directory=directory))
    if switched:
        containers.switch("web", directory)
    containers.calls.clear()


def test_the_repair_removes_staging_directories(apps, layout):
    deploy(apps)
    staging = os.path.join(releases.releases_dir(layout, "web"), ".2.12345")
    os.makedirs(os.path.join(staging, "rootfs"))
    apps._repair("web")
    assert sorted(os.listdir(releases.releases_dir(layout, "web"))) == ["1"]


def test_the_repair_drops_a_reserved_release_the_container_does_not_run(apps, layout,
                                                                        containers):
    killed_while_deploying(apps, layout, containers, switched=False)
    apps._repair("web")
    assert releases.numbers(layout, "web") == [1]
    assert app_json(layout) == {"next": 3, "current": 1, "keep": 3}
    assert containers.calls == [("repair", "web")]


def test_the_repair_makes_a_reserved_release_the_container_runs_current(apps, layout,
                                                                       containers):
    killed_while_deploying(apps, layout, containers, switched=True)
    apps._repair("web")
    assert releases.numbers(layout, "web") == [2, 1]
    assert app_json(layout) == {"next": 3, "current": 2, "keep": 3}


def test_a_deploy_after_a_killed_one_gets_the_next_number(apps, layout, containers):
    killed_while_deploying(apps, layout, containers, switched=False)
    assert deploy(apps).release == 3


def test_the_repair_without_a_reserved_release_leaves_app_json_alone(apps, layout,
                                                                     containers):
    deploy(apps)
    before = app_json(layout)
    containers.calls.clear()
    apps._repair("web")
    assert app_json(layout) == before and containers.calls == []


# -- rollback -------------------------------------------------------------------------------


def test_rollback_switches_to_the_release_before_the_current_one(apps, containers, layout):
    deploy(apps)
    deploy(apps)
    info = apps.rollback("web")
    assert (info.release, info.current) == (1, True)
    assert containers.calls[-1] == ("switch", "web", 1)
    assert app_json(layout)["current"] == 1


def test_rollback_to_a_given_release(apps):
    for _ in range(3):
        deploy(apps)
    assert apps.rollback("web", 1).release == 1


def test_rollback_without_an_older_release_says_so(apps):
    deploy(apps)
    with pytest.raises(NoSuchReleaseError) as raised:
        apps.rollback("web")
    assert raised.value.details == {"releases": [1]}


def test_rollback_to_a_release_not_kept_says_so(apps):
    deploy(apps)
    with pytest.raises(NoSuchReleaseError):
        apps.rollback("web", 7)


def test_rollback_of_an_unknown_app_says_so(apps):
    with pytest.raises(NoSuchAppError):
        apps.rollback("web")


def test_a_rollback_that_fails_its_health_check_switches_back(apps, containers, layout):
    deploy(apps)
    deploy(apps)
    containers.broken.add(1)
    with pytest.raises(HealthCheckError) as raised:
        apps.rollback("web")
    assert raised.value.details["restored"] == 2
    assert runs(layout) == 2 and releases.numbers(layout, "web") == [2, 1]


# -- listing --------------------------------------------------------------------------------


def test_releases_lists_newest_first_marking_the_current_one(apps):
    deploy(apps)
    deploy(apps)
    apps.rollback("web")
    assert [(info.release, info.current) for info in apps.releases("web")] == [
        (2, False), (1, True)]


def test_the_apps_list_names_each_app_with_its_releases(apps):
    deploy(apps, app="web")
    deploy(apps, app="api")
    assert [(info.app, info.current, info.releases, info.state) for info in apps.list()] == [
        ("api", 1, [1], "stopped"), ("web", 1, [1], "stopped")]


# -- removal --------------------------------------------------------------------------------


def with_volume(apps, layout):
    deploy(apps, secrets={"TOKEN": SECRET}, volumes={"data": "/data"})
    volume = releases.volume_dir(layout, "web", "data")
    os.makedirs(volume)  # the fake container store makes no plan, so no volume
    return volume


def test_remove_deletes_releases_and_secrets_and_stops_the_app(apps, containers, layout):
    with_volume(apps, layout)
    apps.remove("web")
    assert not os.path.exists(layout.app_dir("web"))
    assert not os.path.exists(os.path.join(layout.secrets, "web"))
    assert containers.calls[-2:] == [("stop", "web"), ("forget", "web")]


def test_remove_keeps_the_volumes_unless_asked(apps, layout):
    volume = with_volume(apps, layout)
    apps.remove("web")
    assert os.path.isdir(volume)
    assert [info.name for info in apps.volumes("web")] == ["data"]


def test_remove_with_volumes_deletes_them_too(apps, layout):
    with_volume(apps, layout)
    apps.remove("web", volumes=True)
    assert not os.path.exists(os.path.join(layout.volumes, "web"))


def test_remove_deletes_the_images_only_the_app_used(apps, images):
    deploy(apps, "a.tgz")
    deploy(apps, "b.tgz", app="api")
    apps.remove("web")
    assert [info.name for info in images.list()] == ["b.tgz", "c.tgz"]


def test_removing_an_unknown_app_says_so(apps):
    with pytest.raises(NoSuchAppError):
        apps.remove("web")


def test_a_removed_app_is_gone(apps):
    deploy(apps)
    apps.remove("web")
    assert apps.list() == []
    with pytest.raises(NoSuchAppError):
        apps.releases("web")


def test_an_image_that_fails_to_unpack_leaves_no_reserved_release(apps, images, layout):
    put(images, "junk.tar", b"not a tarball at all")
    with pytest.raises(BadImageError):
        deploy(apps, "junk.tar")
    assert "deploying" not in app_json(layout) and apps.list() == []


# -- labels and diff ------------------------------------------------------------------------


def test_labels_are_kept_with_the_release_and_shown_by_the_app_list(apps):
    info = deploy(apps, labels={"vz.fleet": "shop"})
    assert info.labels == {"vz.fleet": "shop"}
    assert apps.releases("web")[0].labels == {"vz.fleet": "shop"}
    assert apps.list()[0].labels == {"vz.fleet": "shop"}


@pytest.mark.parametrize("labels", [{"Fleet": "x"}, {"a b": "x"}, {"fleet": 3},
                                    {"fleet": "x" * 257},
                                    {str(n): "x" for n in range(33)}])
def test_bad_labels_are_refused_before_anything_is_written(apps, layout, labels):
    with pytest.raises(BadRequestError, match="labels"):
        deploy(apps, labels=labels)
    assert app_json(layout) == {}


def image_sha(images, name="a.tgz"):
    return images.get(name).sha256


def test_the_diff_of_an_app_without_releases_is_new(apps, images):
    diff = apps.diff("web", image_sha(images))
    assert (diff.current, diff.changes, diff.state) == (None, ["new"], "stopped")


def test_the_diff_of_the_same_image_and_settings_is_empty(apps, images):
    deploy(apps, env={"LANG": "C"}, secrets={"TOKEN": SECRET}, volumes={"data": "/data"},
           labels={"vz.fleet": "shop"}, options={"log_max": 4096})
    diff = apps.diff("web", image_sha(images), env={"LANG": "C"}, secrets={"TOKEN": SECRET},
                     volumes={"data": "/data/"}, health_spec=QUICK,
                     labels={"vz.fleet": "shop"}, options={"log_max": 4096, "syslog": None})
    assert (diff.current, diff.changes) == (1, [])


def test_the_diff_names_each_setting_that_differs(apps, images):
    deploy(apps, env={"LANG": "C"}, secrets={"TOKEN": SECRET})
    diff = apps.diff("web", image_sha(images, "b.tgz"), env={"LANG": "C.UTF-8"},
                     secrets={"TOKEN": "other"}, health_spec={"tcp": 80},
                     release_command=["/migrate"], options={"log_keep": 1},
                     labels={"a": "b"}, volumes={"v": "/v"})
    assert diff.changes == ["image", "env", "secrets", "volumes", "health",
                            "release_command", "options", "labels"]


def test_the_diff_compares_secret_values_without_returning_them(apps, images):
    deploy(apps, secrets={"TOKEN": SECRET})
    diff = apps.diff("web", image_sha(images), secrets={"TOKEN": SECRET + "x"},
                     health_spec=QUICK)
    assert diff.changes == ["secrets"]
    assert SECRET not in repr(diff)


def test_the_diff_refuses_bad_settings_as_deploy_does(apps, images):
    with pytest.raises(BadRequestError):
        apps.diff("web", image_sha(images), env={"1BAD": "x"})


def test_the_check_of_a_running_app_without_a_check_passes(apps):
    deploy(apps)
    apps.containers.status_if_any = lambda name: type("S", (), {"state": "running"})()
    result = apps.check("web")
    assert (result.release, result.passed) == (1, True)


def test_the_check_of_a_stopped_app_fails_naming_its_state(apps):
    deploy(apps)
    result = apps.check("web")
    assert (result.passed, result.output) == (False, "the app is stopped")


def test_the_check_of_an_unknown_app_says_so(apps):
    with pytest.raises(NoSuchAppError):
        apps.check("nope")


def test_a_deploy_reports_each_step_as_it_starts(apps):
    steps = []
    deploy(apps, release_command=None, report=lambda stage, detail: steps.append(stage))
    assert steps == ["unpack", "switch", "health"]


def test_a_rollback_reports_the_switch_and_the_check(apps):
    deploy(apps)
    deploy(apps)
    steps = []
    apps.rollback("web", report=lambda stage, detail: steps.append((stage, detail)))
    assert steps == [("switch", "release 1"), ("health", "up for 0 s")]
