"""The setup session over a fake SSH link: argv quoted word by word, sudo for a user
other than root, failures that say what failed, files written only when they differ."""

import hashlib
import io

import pytest

from vzmaster.provision.remote import ProvisionError, Shell


class Channel:
    def __init__(self, node):
        self.node = node
        self.sent = b""

    def settimeout(self, timeout):
        pass

    def exec_command(self, command):
        self.command = command
        self.node.commands.append(command)

    def sendall(self, data):
        self.sent += data

    def shutdown_write(self):
        self.reply = self.node.answer(self.command, self.sent)

    def makefile(self, mode):
        return io.BytesIO(self.reply[1])

    def makefile_stderr(self, mode):
        return io.BytesIO(self.reply[2])

    def recv_exit_status(self):
        return self.reply[0]

    def close(self):
        pass


class Node:
    """Answers each command with (status, stdout, stderr) from ``replies`` in order."""

    def __init__(self, *replies):
        self.replies = list(replies)
        self.commands = []
        self.inputs = []

    def answer(self, command, data):
        self.inputs.append(data)
        return self.replies.pop(0) if self.replies else (0, b"", b"")

    def get_transport(self):
        return self

    def is_active(self):
        return True

    def open_session(self, timeout=None):
        return Channel(self)

    def close(self):
        pass


def test_argv_is_quoted_word_by_word():
    node = Node()
    Shell(node, "root@n1", sudo=False).run(["echo", "a b", "$(reboot)"])
    assert node.commands == ["echo 'a b' '$(reboot)'"]


def test_another_user_runs_privileged_commands_through_sudo_n():
    node = Node()
    shell = Shell(node, "deploy@n1", sudo=True)
    shell.run(["id"])
    shell.run(["id"], privileged=False)
    assert node.commands == ["sudo -n -- id", "id"]


def test_a_failing_command_says_what_and_the_last_line_it_wrote():
    node = Node((1, b"", b"warning\nid: 'x': no such user\n"))
    with pytest.raises(ProvisionError, match="id exited 1: id: 'x': no such user"):
        Shell(node, "deploy@n1", sudo=True).run(["id"])


def test_a_file_that_already_holds_the_bytes_is_not_written():
    data = b"same"
    node = Node((0, hashlib.sha256(data).hexdigest().encode() + b"  /x\n", b""))
    assert not Shell(node, "root@n1", sudo=False).write_file("/x", data)
    assert len(node.commands) == 1


def test_a_file_is_written_through_stdin_with_its_sha256_to_check():
    data = b"new bytes"
    node = Node((3, b"", b""), (0, b"", b""))
    assert Shell(node, "root@n1", sudo=False).write_file("/etc/x", data, 0o600)
    assert node.inputs[-1] == data
    assert node.commands[-1].endswith("sh /etc/x 600 " + hashlib.sha256(data).hexdigest())


def test_a_missing_file_reads_as_none():
    assert Shell(Node((3, b"", b"")), "root@n1", sudo=False).read_file("/nope") is None


def test_a_refused_sudo_is_one_line_saying_what_to_add():
    node = Node((1, b"", b"sudo: a password is required\n"))
    with pytest.raises(ProvisionError, match="deploy may not use sudo without a password") as e:
        Shell(node, "deploy@n1", sudo=True).run(["id"], check=False)
    assert "NOPASSWD" in e.value.message and "\n" not in e.value.message
