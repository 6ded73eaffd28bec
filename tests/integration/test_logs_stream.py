"""container.logs through a real vzslave child: tail, cursor, follow and cancel."""

import json
import os
import threading
import time

import pytest

from vzmaster import NoSuchContainerError


@pytest.fixture
def app_log(node_root):
    """A container "app" known to the node, and a function appending to its log."""
    state = os.path.join(node_root, "containers", "app")
    os.makedirs(state)
    with open(os.path.join(state, "settings.json"), "w") as f:
        json.dump({"wanted": "stopped", "log_max": 4096, "log_keep": 2}, f)
    os.makedirs(os.path.join(node_root, "logs"), exist_ok=True)
    path = os.path.join(node_root, "logs", "app.log")

    def append(*lines):
        with open(path, "a") as log:
            log.writelines(line + "\n" for line in lines)

    return append


def test_logs_tail_gives_the_last_lines(node, app_log):
    app_log(*("line {}".format(i) for i in range(10)))
    assert list(node.logs("app", tail=3)) == ["line 7", "line 8", "line 9"]


def test_logs_from_a_cursor_give_only_what_came_after(node, app_log):
    app_log("one", "two")
    stream = node.logs("app", tail=10)
    assert list(stream) == ["one", "two"]
    app_log("three")
    assert list(node.logs("app", cursor=stream.cursor)) == ["three"]


def test_a_followed_log_streams_new_lines_until_closed(node, app_log):
    app_log("before")

    def writer():
        for i in range(5):
            time.sleep(0.05)
            app_log("new {}".format(i))

    thread = threading.Thread(target=writer)
    thread.start()
    seen = []
    with node.logs("app", tail=1, follow=True) as stream:
        for line in stream:
            seen.append(line)
            if line == "new 4":
                break
    thread.join()
    assert seen == ["before"] + ["new {}".format(i) for i in range(5)]
    assert node.status("app").state == "stopped"  # the session is in step after a cancel


def test_a_follow_survives_a_rotation_by_rename(node, app_log, node_root):
    path = os.path.join(node_root, "logs", "app.log")
    app_log("old")
    seen = []
    with node.logs("app", tail=1, follow=True) as stream:
        for line in stream:
            seen.append(line)
            if line == "old":
                app_log("last of old")
                os.rename(path, path + ".1")
                app_log("first of new")
            if line == "first of new":
                break
    assert seen == ["old", "last of old", "first of new"]


def test_logs_of_an_unknown_container_are_refused(node):
    with pytest.raises(NoSuchContainerError):
        list(node.logs("ghost"))
