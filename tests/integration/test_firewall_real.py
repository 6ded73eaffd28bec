"""The firewall chain for real: iptables-restore and nft in throwaway network namespaces.

Never the host's rules: each test makes a network namespace of its own (``ip netns
add``), and everything in it, vz's requests and the administrator's hand edits alike,
runs there through ``ip netns exec``. vz's requests run as separate processes on one
state root, as separate vzslave sessions would.
"""

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from vzslave.firewall import render_iptables_rules, render_nft_rules

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NEEDS = {"iptables": ["iptables-restore", "iptables-save", "ip6tables-restore",
                      "ip6tables-save", "iptables", "ip6tables"],
         "nft": ["nft"]}
_names = itertools.count(1)

# One vz request, as a vzslave session would make it: the op's result as JSON.
DRIVER = """
import json, sys
from vzslave.config import Layout
from vzslave.firewall import Firewall
layout = Layout(sys.argv[1])
layout.make_dirs()
firewall = Firewall(layout)
op = sys.argv[2]
if op == "apply":
    status = firewall.apply(json.loads(sys.argv[3]), 22, sys.argv[4] or None, None)
else:
    status = getattr(firewall, op)()
print(json.dumps(status._asdict()))
"""


def require(backend):
    """Skip (or, with VZ_REQUIRE_SYSTEM=1, fail) unless this backend can be tested."""
    reasons = []
    if os.geteuid() != 0:
        reasons.append("needs root")
    reasons += ["no {}".format(tool) for tool in ["ip"] + NEEDS[backend]
                if shutil.which(tool) is None]
    if not reasons:
        return
    message = "firewall tests ({}) cannot run: {}".format(backend, "; ".join(reasons))
    if os.environ.get("VZ_REQUIRE_SYSTEM") == "1":
        pytest.fail(message + " [VZ_REQUIRE_SYSTEM=1]", pytrace=False)
    pytest.skip(message)


class Netns:
    """A throwaway network namespace with one vz state root."""

    def __init__(self, name, root):
        self.name = name
        self.root = root

    def run(self, *argv, check=True, input=None):
        """Run argv in the namespace; its stdout."""
        done = subprocess.run(["ip", "netns", "exec", self.name] + list(argv), input=input,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=60)
        if check and done.returncode != 0:
            raise AssertionError("{} failed: {}".format(argv, done.stderr))
        return done

    def vz_argv(self, op, *args):
        return ["ip", "netns", "exec", self.name, sys.executable, "-c", DRIVER, self.root,
                op] + list(args)

    def vz(self, op, ports=(), backend=""):
        """A vz request in the namespace: the FirewallStatus as a dict."""
        args = [json.dumps([{"port": n, "proto": p} for n, p in ports]), backend] \
            if op == "apply" else []
        done = subprocess.run(self.vz_argv(op, *args), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True, timeout=60,
                              env=dict(os.environ, PYTHONPATH=ROOT))
        if done.returncode != 0:
            raise AssertionError("vz {} failed: {}".format(op, done.stderr))
        return json.loads(done.stdout)

    def ruleset(self, backend):
        """Everything the namespace's firewall holds, in the tool's words."""
        if backend == "nft":
            return self.run("nft", "list", "ruleset").stdout
        return "".join(_rules(self.run(save).stdout) for save in ("iptables-save",
                                                                   "ip6tables-save"))


def _rules(save_output):
    """iptables-save output less its comments and counters."""
    return "".join(line.split(" [")[0] + "\n" for line in save_output.splitlines()
                   if not line.startswith("#"))


@pytest.fixture(params=["iptables", "nft"])
def backend(request):
    require(request.param)
    return request.param


@pytest.fixture
def netns(tmp_path):
    name = "vzfwtest-{}-{}".format(os.getpid(), next(_names))
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        made = Netns(name, str(tmp_path / "vz"))
        made.run("ip", "link", "set", "lo", "up")
        yield made
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def hand_edit(netns, backend):
    """What an administrator might do: let 9090 in, first in vz's chain."""
    if backend == "nft":
        netns.run("nft", "insert", "rule", "inet", "vz", "input", "tcp", "dport", "9090",
                  "accept")
    else:
        netns.run("iptables", "-I", "VZ-INPUT", "1", "-p", "tcp", "--dport", "9090",
                  "-j", "ACCEPT")


def listed_rules(netns, backend):
    if backend == "nft":
        text = netns.run("nft", "list", "table", "inet", "vz").stdout
        return [line.strip() for line in text.splitlines()
                if line.startswith("\t\t") and not line.strip().startswith("type ")]
    return [line for line in netns.run("iptables-save", "-t", "filter").stdout.splitlines()
            if line.startswith("-A VZ-INPUT ")]


def test_an_applied_chain_lists_as_rendered_with_no_drift(netns, backend):
    status = netns.vz("apply", [(8080, "tcp"), (53, "udp")], backend)
    assert (status["backend"], status["active"], status["drift"]) == (backend, True, [])
    assert (status["ports"], status["ssh_ports"]) == (["53/udp", "8080/tcp"], [22])
    expected = (render_nft_rules([22], ["53/udp", "8080/tcp"]) if backend == "nft"
                else render_iptables_rules([22], ["53/udp", "8080/tcp"], "ipv4"))
    assert listed_rules(netns, backend) == expected
    assert netns.vz("status")["drift"] == []


def test_a_hand_edit_is_drift_and_apply_puts_the_chain_right(netns, backend):
    netns.vz("apply", [(8080, "tcp")], backend)
    hand_edit(netns, backend)
    drift = netns.vz("status")["drift"]
    assert len(drift) == 1 and "added by hand" in drift[0] and "9090" in drift[0]
    assert netns.vz("apply", [(8080, "tcp")], backend)["drift"] == []
    assert not [rule for rule in listed_rules(netns, backend) if "9090" in rule]


def test_a_deleted_jump_is_drift_and_apply_puts_it_back(netns):
    require("iptables")
    netns.vz("apply", [(8080, "tcp")], "iptables")
    netns.run("iptables", "-D", "INPUT", "-j", "VZ-INPUT")
    status = netns.vz("status")
    assert (status["active"], status["drift"]) == (
        False, ["IPv4: INPUT no longer jumps to VZ-INPUT"])
    assert netns.vz("apply", [(8080, "tcp")], "iptables")["active"]
    assert netns.run("iptables", "-C", "INPUT", "-j", "VZ-INPUT").returncode == 0


def test_remove_leaves_an_empty_nft_ruleset_empty(netns):
    require("nft")
    assert netns.ruleset("nft") == ""
    netns.vz("apply", [(8080, "tcp")], "nft")
    assert not netns.vz("remove")["active"]
    assert netns.ruleset("nft") == ""


def test_remove_leaves_no_rule_and_no_chain_of_iptables(netns):
    """iptables itself makes the filter table and its built-in chains (empty, ACCEPT);
    vz leaves them so, and nothing else."""
    require("iptables")
    netns.vz("apply", [(8080, "tcp")], "iptables")
    netns.vz("remove")
    text = netns.ruleset("iptables")
    assert [line for line in text.splitlines() if line.startswith(("-", ":VZ"))] == []
    assert [line for line in text.splitlines() if line.startswith(":")] == [
        ":INPUT ACCEPT", ":FORWARD ACCEPT", ":OUTPUT ACCEPT"] * 2


def admin_rules(netns, backend):
    """An administrator's own rules, which vz must leave exactly as they are."""
    if backend == "nft":
        netns.run("nft", "-f", "-", input=(
            "table inet admin {\n\tchain input {\n\t\ttype filter hook input priority 10; "
            "policy accept;\n\t\ttcp dport 5432 ip saddr 192.0.2.0/24 accept\n\t}\n}\n"))
    for tool in ("iptables", "ip6tables"):
        netns.run(tool, "-N", "ADMIN")
        netns.run(tool, "-A", "ADMIN", "-p", "tcp", "--dport", "5432", "-j", "ACCEPT")
        netns.run(tool, "-A", "INPUT", "-j", "ADMIN")
        netns.run(tool, "-A", "OUTPUT", "-p", "tcp", "--dport", "25", "-j", "DROP")


def test_remove_leaves_the_administrators_rules_exactly_as_they_were(netns, backend):
    require("iptables")  # the administrator's rules are made with it for both backends
    admin_rules(netns, backend)
    before = netns.ruleset(backend), netns.ruleset("iptables")
    netns.vz("apply", [(8080, "tcp")], backend)
    during = netns.ruleset("iptables")
    assert "-A INPUT -j ADMIN" in during and "-A ADMIN -p tcp -m tcp --dport 5432" in during
    netns.vz("remove")
    assert (netns.ruleset(backend), netns.ruleset("iptables")) == before


def test_a_chain_of_vz_name_the_administrator_made_is_refused_and_kept(netns, backend):
    if backend == "nft":
        netns.run("nft", "add", "table", "inet", "vz")
    else:
        netns.run("iptables", "-N", "VZ-INPUT")
    before = netns.ruleset(backend)
    done = subprocess.run(netns.vz_argv("apply", "[]", backend), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True,
                          env=dict(os.environ, PYTHONPATH=ROOT), timeout=60)
    assert done.returncode != 0 and "FirewallError" in done.stderr
    assert "vz did not make it" in done.stderr
    netns.vz("remove")
    assert netns.ruleset(backend) == before


def test_removing_where_nothing_is_there_changes_nothing(netns, backend):
    before = netns.ruleset(backend)
    assert not netns.vz("remove")["active"]
    assert netns.ruleset(backend) == before


def killed_at(netns, step, ports, backend):
    """Run an apply that pauses at ``step`` (fs.checkpoint), and SIGKILL it there."""
    os.makedirs(netns.root, exist_ok=True)
    with open(os.path.join(netns.root, ".pause"), "w") as pause:
        pause.write("{} 30\n".format(step))
    argv = netns.vz_argv("apply", json.dumps([{"port": n, "proto": p} for n, p in ports]),
                         backend)
    child = subprocess.Popen(argv, env=dict(os.environ, PYTHONPATH=ROOT),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    reached = os.path.join(netns.root, ".reached")
    deadline = time.monotonic() + 30
    while not os.path.exists(reached):
        assert child.poll() is None and time.monotonic() < deadline, "never paused"
        time.sleep(0.02)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    os.unlink(os.path.join(netns.root, ".pause"))
    os.unlink(reached)


def test_when_vzslave_is_killed_before_the_tool_ran_the_old_ports_stand(netns, backend):
    """When vzslave dies after writing its intent but before the transaction, the
    record never claims the new ports, and status says to apply again."""
    netns.vz("apply", [(8080, "tcp")], backend)
    killed_at(netns, "firewall-pending", [(9090, "tcp")], backend)
    status = netns.vz("status")
    assert status["ports"] == ["8080/tcp"] and "interrupted" in status["drift"][0]
    assert not [rule for rule in listed_rules(netns, backend) if "9090" in rule]


def test_when_vzslave_is_killed_after_the_tool_ran_status_takes_the_apply(netns, backend):
    netns.vz("apply", [(8080, "tcp")], backend)
    killed_at(netns, "firewall-applied", [(9090, "tcp")], backend)
    status = netns.vz("status")
    assert (status["ports"], status["drift"], status["active"]) == (["9090/tcp"], [], True)
