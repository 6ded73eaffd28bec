"""The node's firewall chain: rendering and listing (sans-I/O), drift, the SSH rule, and
the apply/status/remove logic against a fake of the tools. No tool runs here:
tests/integration/test_firewall_real.py runs iptables-restore and nft in a netns."""

import json

import pytest

from vzmaster import Client
from vzmaster.transports.inprocess import InProcessTransport
from vzslave import firewall
from vzslave.config import Layout, Limits
from vzslave.errors import BadRequestError, FirewallError
from vzslave.firewall import (
    Firewall,
    Listing,
    ToolResult,
    Tools,
    drift,
    listening_ports,
    normal_iptables_rule,
    parse_iptables_save,
    parse_nft_table,
    render_iptables_apply,
    render_iptables_put_back,
    render_iptables_remove,
    render_iptables_rules,
    render_nft_apply,
    render_nft_remove,
    render_nft_rules,
    ssh_ports_for,
)
from vzslave.handlers import OPS, Call, Node, check_args
from vzslave.records import FirewallStatus

JUMP = "-A INPUT -j VZ-INPUT"


# -- a fake of the tools: a tiny iptables and nft ------------------------------------

class FakeTools(Tools):
    """Keeps a filter table per family and an nft table, as the real tools would."""

    def __init__(self, have=("iptables-restore", "iptables-save", "ip6tables-restore",
                             "ip6tables-save", "nft"), ipv6=True, sshd=()):
        self.have = set(have)
        self.ipv6 = ipv6
        self.sshd = list(sshd)
        self.calls = []
        self.chains = {"ipv4": None, "ipv6": None}  # None: no VZ-INPUT; else its rules
        self.input = {"ipv4": [], "ipv6": []}  # INPUT's rules
        self.nft = None  # the listing of table inet vz, or None
        self.fail = lambda argv, stdin: None  # a ToolResult to fail with, or None
        self.on_run = lambda argv, stdin: None

    def which(self, name):
        return "/usr/sbin/" + name if name in self.have else None

    def has_ipv6(self):
        return self.ipv6

    def sshd_ports(self):
        return self.sshd

    def run(self, argv, stdin=""):
        self.calls.append((list(argv), stdin))
        self.on_run(argv, stdin)
        failure = self.fail(argv, stdin)
        if failure is not None:
            return failure
        tool = argv[0]
        family = "ipv6" if tool.startswith("ip6") else "ipv4"
        if tool.endswith("-save"):
            return ToolResult(0, self.save(family), "")
        if tool.endswith("-restore"):
            self.restore(family, stdin)
            return ToolResult(0, "", "")
        if argv[1:] == ["list", "table", "inet", "vz"]:
            if self.nft is None:
                return ToolResult(1, "", "Error: No such file or directory\n")
            return ToolResult(0, self.nft, "")
        if argv[1:] == ["list", "tables"]:
            return ToolResult(0, "table inet vz\n" if self.nft else "", "")
        if argv[1:] == ["-f", "-"]:
            body = stdin.split("delete table inet vz\n", 1)[1]
            self.nft = body.replace("priority 0;", "priority filter;") or None
            return ToolResult(0, "", "")
        raise AssertionError(argv)

    def save(self, family):
        lines = ["*filter", ":INPUT ACCEPT [0:0]"]
        if self.chains[family] is not None:
            lines.append(":VZ-INPUT - [0:0]")
        return "\n".join(lines + self.input[family] + (self.chains[family] or [])
                         + ["COMMIT", ""])

    def restore(self, family, text):
        for line in text.splitlines():
            if line == ":VZ-INPUT - [0:0]":
                self.chains[family] = []
            elif line.startswith("-A VZ-INPUT "):
                self.chains[family].append(line)
            elif line == "-I INPUT 1 -j VZ-INPUT":
                self.input[family].insert(0, JUMP)
            elif line.startswith("-D INPUT "):
                self.input[family].remove("-A" + line[2:])
            elif line == "-X VZ-INPUT":
                self.chains[family] = None


@pytest.fixture
def layout(tmp_path):
    made = Layout(str(tmp_path / "vz"))
    made.make_dirs()
    return made


@pytest.fixture
def tools():
    return FakeTools()


@pytest.fixture
def fw(layout, tools):
    return Firewall(layout, tools)


def tcp(*numbers):
    return [{"port": number, "proto": "tcp"} for number in numbers]


def record(layout):
    with open(layout.firewall) as source:
        return json.load(source)


# -- rendering: iptables --------------------------------------------------------------

def test_the_ipv4_chain_accepts_loopback_replies_icmp_ssh_and_the_ports_then_drops():
    assert render_iptables_rules([22], ["53/udp", "8080/tcp"], "ipv4") == [
        "-A VZ-INPUT -i lo -j ACCEPT",
        "-A VZ-INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-A VZ-INPUT -p icmp -j ACCEPT",
        "-A VZ-INPUT -p tcp -m tcp --dport 22 -j ACCEPT",
        "-A VZ-INPUT -p udp -m udp --dport 53 -j ACCEPT",
        "-A VZ-INPUT -p tcp -m tcp --dport 8080 -j ACCEPT",
        "-A VZ-INPUT -j DROP"]


def test_the_ipv6_chain_accepts_icmpv6_and_dhcpv6_replies_between_link_local_addresses():
    rules = render_iptables_rules([22], [], "ipv6")
    assert rules[2:4] == [
        "-A VZ-INPUT -p ipv6-icmp -j ACCEPT",
        "-A VZ-INPUT -s fe80::/10 -d fe80::/10 -p udp -m udp --sport 547 --dport 546 -j ACCEPT"]


def test_without_conntrack_the_replies_rule_takes_the_state_match():
    rules = render_iptables_rules([22], [], "ipv4", "state")
    assert rules[1] == "-A VZ-INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT"


def test_a_declared_port_that_is_an_ssh_port_is_accepted_once():
    rules = render_iptables_rules([22], ["22/tcp", "22/udp"], "ipv4")
    assert [rule for rule in rules if "--dport 22 " in rule] == [
        "-A VZ-INPUT -p tcp -m tcp --dport 22 -j ACCEPT",
        "-A VZ-INPUT -p udp -m udp --dport 22 -j ACCEPT"]


def test_the_restore_file_declares_only_vz_chain_and_adds_the_missing_jump_in_it():
    assert render_iptables_apply(["-A VZ-INPUT -j DROP"], add_jump=True) == (
        "*filter\n"
        ":VZ-INPUT - [0:0]\n"
        "-A VZ-INPUT -j DROP\n"
        "-I INPUT 1 -j VZ-INPUT\n"
        "COMMIT\n")


def test_the_restore_file_leaves_a_jump_that_is_there_alone():
    assert "INPUT 1" not in render_iptables_apply(["-A VZ-INPUT -j DROP"], add_jump=False)


def test_remove_deletes_every_jump_to_the_chain_then_the_chain():
    listing = Listing(True, True, ["-A VZ-INPUT -j DROP"],
                      [JUMP, "-A INPUT -i eth0 -j VZ-INPUT"])
    assert render_iptables_remove(listing) == (
        "*filter\n"
        "-D INPUT -j VZ-INPUT\n"
        "-D INPUT -i eth0 -j VZ-INPUT\n"
        "-F VZ-INPUT\n"
        "-X VZ-INPUT\n"
        "COMMIT\n")


def test_remove_where_there_is_nothing_renders_no_transaction():
    assert render_iptables_remove(Listing(False, False, [])) == ""


def test_a_rollback_puts_the_old_rules_back_and_takes_the_jump_it_added():
    before = Listing(True, False, ["-A VZ-INPUT -j ACCEPT"])
    assert render_iptables_put_back(before) == (
        "*filter\n:VZ-INPUT - [0:0]\n-A VZ-INPUT -j ACCEPT\n-D INPUT -j VZ-INPUT\nCOMMIT\n")


def test_a_rollback_where_there_was_no_chain_removes_it_and_its_jump():
    assert render_iptables_put_back(Listing(False, False, [])) == (
        "*filter\n-D INPUT -j VZ-INPUT\n-F VZ-INPUT\n-X VZ-INPUT\nCOMMIT\n")


# -- rendering: nft -------------------------------------------------------------------

def test_the_nft_file_replaces_only_vz_table_in_one_transaction():
    assert render_nft_apply(render_nft_rules([22], ["8080/tcp", "53/udp"])) == (
        "table inet vz\n"
        "delete table inet vz\n"
        "table inet vz {\n"
        "\tchain input {\n"
        "\t\ttype filter hook input priority 0; policy accept;\n"
        '\t\tiif "lo" accept\n'
        "\t\tct state established,related accept\n"
        "\t\tmeta l4proto icmp accept\n"
        "\t\tmeta l4proto ipv6-icmp accept\n"
        "\t\tip6 saddr fe80::/10 ip6 daddr fe80::/10 udp sport 547 udp dport 546 accept\n"
        "\t\ttcp dport 22 accept\n"
        "\t\ttcp dport 8080 accept\n"
        "\t\tudp dport 53 accept\n"
        "\t\tdrop\n"
        "\t}\n"
        "}\n")


def test_the_nft_remove_file_is_no_error_where_the_table_is_missing():
    assert render_nft_remove() == "table inet vz\ndelete table inet vz\n"


# -- listings -------------------------------------------------------------------------

SAVE = """# Generated by iptables-save v1.8.9 (nf_tables) on Mon Dec  7 20:19:56 2026
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:ADMIN - [0:0]
:VZ-INPUT - [0:0]
-A INPUT -s 192.0.2.0/24 -j ADMIN
-A INPUT -j VZ-INPUT
-A INPUT -i eth1 -j VZ-INPUT
-A ADMIN -j ACCEPT
-A VZ-INPUT -i lo -j ACCEPT
-A VZ-INPUT -j DROP
COMMIT
"""


def test_iptables_save_gives_vz_chain_its_rules_and_inputs_jumps_to_it():
    assert parse_iptables_save(SAVE) == Listing(
        True, True, ["-A VZ-INPUT -i lo -j ACCEPT", "-A VZ-INPUT -j DROP"],
        [JUMP, "-A INPUT -i eth1 -j VZ-INPUT"])


def test_a_jump_with_conditions_is_not_the_jump_vz_adds():
    listing = parse_iptables_save(SAVE.replace("-A INPUT -j VZ-INPUT\n", ""))
    assert not listing.hooked and listing.jumps == ["-A INPUT -i eth1 -j VZ-INPUT"]


def test_an_empty_filter_table_has_no_vz_chain():
    assert parse_iptables_save("") == Listing(False, False, [], [])


NFT = """table inet vz {
\tchain input {
\t\ttype filter hook input priority filter; policy accept;
\t\tiif "lo" accept
\t\tdrop
\t}
}
"""


def test_the_nft_listing_gives_the_rules_of_chain_input_and_its_hook():
    assert parse_nft_table(NFT) == Listing(True, True, ['iif "lo" accept', "drop"])


def test_a_base_chain_whose_policy_was_changed_is_not_hooked_as_vz_made_it():
    assert not parse_nft_table(NFT.replace("policy accept", "policy drop")).hooked


def test_a_chain_added_to_vz_table_is_listed_among_its_rules():
    text = NFT[:-2] + "\n\tchain extra {\n\t\tcounter\n\t}\n}\n"
    assert parse_nft_table(text).rules == ['iif "lo" accept', "drop", "chain extra"]


def test_rules_compare_without_the_implicit_protocol_match_and_in_any_state_order():
    assert normal_iptables_rule("-A VZ-INPUT -p tcp -m tcp --dport 22 -j ACCEPT") == (
        normal_iptables_rule("-A VZ-INPUT -p tcp --dport 22 -j ACCEPT"))
    assert normal_iptables_rule("-A VZ-INPUT -m state --state ESTABLISHED,RELATED -j ACCEPT") == (
        normal_iptables_rule("-A VZ-INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT"))


# -- drift ----------------------------------------------------------------------------

RULES = ["-A VZ-INPUT -i lo -j ACCEPT", "-A VZ-INPUT -p tcp -m tcp --dport 22 -j ACCEPT",
         "-A VZ-INPUT -j DROP"]
APPLIED = {"backend": "iptables", "families": ["ipv4"], "listed": {"ipv4": RULES}}


def listed(rules=RULES, hooked=True, exists=True):
    return {"ipv4": Listing(exists, hooked, list(rules), [JUMP] if hooked else [])}


def test_a_chain_as_it_was_applied_has_no_drift():
    assert drift(APPLIED, listed(), owned=True) == []


def test_a_rule_added_by_hand_is_drift():
    rules = RULES[:1] + ["-A VZ-INPUT -p tcp -m tcp --dport 9090 -j ACCEPT"] + RULES[1:]
    assert drift(APPLIED, listed(rules), owned=True) == [
        "IPv4: added by hand: -A VZ-INPUT -p tcp -m tcp --dport 9090 -j ACCEPT"]


def test_a_rule_removed_by_hand_is_drift():
    assert drift(APPLIED, listed(RULES[:2]), owned=True) == [
        "IPv4: removed by hand: -A VZ-INPUT -j DROP"]


def test_rules_put_in_another_order_are_drift():
    assert drift(APPLIED, listed(RULES[::-1]), owned=True) == [
        "IPv4: the rules of chain VZ-INPUT were reordered"]


def test_a_jump_deleted_by_hand_is_drift():
    assert drift(APPLIED, listed(hooked=False), owned=True) == [
        "IPv4: INPUT no longer jumps to VZ-INPUT"]


def test_a_chain_deleted_by_hand_is_drift():
    assert drift(APPLIED, listed([], False, False), owned=True) == [
        "IPv4: chain VZ-INPUT is gone"]


def test_a_chain_of_vz_name_that_vz_did_not_make_is_said_to_be_left_alone():
    assert drift(None, listed(), owned=False) == [
        "IPv4: chain VZ-INPUT is there, but vz did not make it; vz leaves it alone"]


# -- SSH is never closed --------------------------------------------------------------

def test_the_port_of_the_ssh_session_is_always_accepted():
    assert ssh_ports_for(22, "192.0.2.7 50000 192.0.2.1 2222") == [22, 2222]


def test_the_ports_sshd_listens_on_are_always_accepted():
    assert ssh_ports_for(22, None, [22, 2200]) == [22, 2200]


def test_ssh_port_zero_keeps_only_the_sessions_port():
    assert ssh_ports_for(0, "192.0.2.7 50000 192.0.2.1 2222") == [2222]


def test_a_request_that_leaves_no_ssh_port_is_refused():
    with pytest.raises(BadRequestError, match="no SSH port") as caught:
        ssh_ports_for(0, None)
    assert caught.value.details == {"argument": "ssh_port"}


@pytest.mark.parametrize("value", ["", "192.0.2.7 50000 192.0.2.1", "a b c port",
                                   "a b c 70000"])
def test_a_malformed_ssh_connection_adds_no_port(value):
    assert ssh_ports_for(22, value) == [22]


TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1
   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1002 1
   2: 0A00C80A:0016 0100C80A:C350 01 00000000:00000000 02:0009F4AB 00000000     0        0 1003 4
"""


def test_sshd_ports_are_its_sockets_in_the_listen_state():
    assert listening_ports(TCP, {"1001", "1003"}) == [22]


def test_apply_opens_the_sessions_port_in_the_chain(fw, tools):
    fw.apply(tcp(), 22, None, "192.0.2.7 50000 192.0.2.1 2222")
    assert "-A VZ-INPUT -p tcp -m tcp --dport 2222 -j ACCEPT" in tools.chains["ipv4"]


# -- choosing the backend -------------------------------------------------------------

def test_iptables_restore_is_chosen_where_the_node_has_it(fw):
    assert fw.apply(tcp(8080)).backend == "iptables"


def test_nft_is_chosen_where_the_node_has_no_iptables_restore(layout):
    status = Firewall(layout, FakeTools(have=["nft"])).apply(tcp(8080))
    assert (status.backend, status.families) == ("nft", ["ipv4", "ipv6"])


def test_a_node_without_either_tool_is_told_what_to_install(layout):
    with pytest.raises(FirewallError, match="apt install iptables") as caught:
        Firewall(layout, FakeTools(have=[])).apply(tcp(8080))
    assert caught.value.details == {"missing": ["iptables-restore", "nft"]}


def test_a_forced_backend_the_node_lacks_is_an_error_naming_it(layout):
    with pytest.raises(FirewallError, match="the nft backend needs nft, which this node lacks"):
        Firewall(layout, FakeTools(have=["iptables-restore", "iptables-save"])).apply(
            tcp(8080), backend="nft")


def test_status_of_a_node_without_either_tool_says_no_backend(layout):
    assert Firewall(layout, FakeTools(have=[])).status() == FirewallStatus(
        None, False, [], [], [], None, [])


def test_without_ip6tables_only_ipv4_is_covered(layout):
    tools = FakeTools(have=["iptables-restore", "iptables-save"])
    assert Firewall(layout, tools).apply(tcp(8080)).families == ["ipv4"]


def test_without_ipv6_in_the_kernel_ip6tables_is_not_run(layout):
    tools = FakeTools(ipv6=False)
    Firewall(layout, tools).apply(tcp(8080))
    assert not [argv for argv, _ in tools.calls if argv[0].startswith("ip6")]


# -- apply ----------------------------------------------------------------------------

def test_apply_reports_what_it_opened(fw):
    status = fw.apply(tcp(8080, 8080) + [{"port": 53, "proto": "udp"}])
    assert status == FirewallStatus("iptables", True, ["53/udp", "8080/tcp"], [22], [],
                                    status.applied, ["ipv4", "ipv6"])


def test_each_family_is_one_restore_transaction_with_noflush(fw, tools):
    fw.apply(tcp(8080))
    restores = [argv for argv, _ in tools.calls if argv[0].endswith("-restore")]
    assert restores == [["iptables-restore", "--noflush"], ["ip6tables-restore", "--noflush"]]


def test_the_jump_is_added_only_where_it_is_missing(fw, tools):
    fw.apply(tcp(8080))
    fw.apply(tcp(9090))
    assert tools.input == {"ipv4": [JUMP], "ipv6": [JUMP]}


def test_when_conntrack_fails_apply_takes_the_state_match(fw, tools):
    """When the node has no conntrack match (OpenVZ guests), the same rules go in with
    -m state."""
    tools.fail = lambda argv, stdin: (ToolResult(1, "", "line 3 failed\n")
                                      if "conntrack" in stdin else None)
    fw.apply(tcp(8080))
    assert tools.chains["ipv4"][1] == (
        "-A VZ-INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT")
    assert record(fw.layout)["applied"]["match"] == "state"


def test_a_failed_restore_says_the_rules_are_as_before_and_records_nothing(fw, tools):
    tools.fail = lambda argv, stdin: (ToolResult(2, "", "iptables-restore: line 2 failed\n")
                                      if argv[0] == "iptables-restore" else None)
    with pytest.raises(FirewallError) as caught:
        fw.apply(tcp(8080))
    assert caught.value.message == (
        "iptables-restore failed: iptables-restore: line 2 failed; the node's rules are as before")
    assert caught.value.details["stderr"] == "iptables-restore: line 2 failed\n"
    assert record(fw.layout) == {"applied": None, "interrupted": False, "owned": [],
                                 "pending": None, "version": 1}


def test_when_ipv6_fails_the_ipv4_chain_is_put_back_as_it_was(fw, tools):
    fw.apply(tcp(8080))
    before = dict(tools.chains), dict(tools.input)
    tools.fail = lambda argv, stdin: (ToolResult(1, "", "no\n")
                                      if argv[0] == "ip6tables-restore" else None)
    with pytest.raises(FirewallError, match="ip6tables-restore failed"):
        fw.apply(tcp(9090))
    assert (tools.chains, tools.input) == before


def test_when_ipv6_fails_on_a_first_apply_no_ipv4_chain_is_left(fw, tools):
    tools.fail = lambda argv, stdin: (ToolResult(1, "", "no\n")
                                      if argv[0] == "ip6tables-restore" else None)
    with pytest.raises(FirewallError):
        fw.apply(tcp(8080))
    assert tools.chains["ipv4"] is None and tools.input["ipv4"] == []


def test_the_record_says_pending_while_the_tool_applies_and_applied_after(fw, tools):
    seen = []
    tools.on_run = lambda argv, stdin: seen.append(
        record(fw.layout)) if argv[0] == "iptables-restore" else None
    fw.apply(tcp(8080))
    assert seen[0]["applied"] is None and seen[0]["pending"]["ports"] == ["8080/tcp"]
    after = record(fw.layout)
    assert after["pending"] is None and after["applied"]["ports"] == ["8080/tcp"]


def test_the_record_keeps_the_rendered_rules_and_the_listing(fw, tools):
    fw.apply(tcp(8080))
    applied = record(fw.layout)["applied"]
    assert applied["rules"]["ipv4"] == render_iptables_rules([22], ["8080/tcp"], "ipv4")
    assert applied["listed"]["ipv4"] == tools.chains["ipv4"]


def test_a_chain_named_vz_input_that_vz_did_not_make_is_not_taken_over(fw, tools):
    tools.chains["ipv4"] = ["-A VZ-INPUT -j ACCEPT"]
    with pytest.raises(FirewallError, match="vz did not make it") as caught:
        fw.apply(tcp(8080))
    assert "iptables -X VZ-INPUT" in caught.value.message
    assert tools.chains["ipv4"] == ["-A VZ-INPUT -j ACCEPT"]


def test_a_switch_of_backend_removes_the_old_chain_once_the_new_one_is_in(fw, tools):
    fw.apply(tcp(8080))
    status = fw.apply(tcp(8080), backend="nft")
    assert (status.backend, status.active) == ("nft", True)
    assert tools.chains == {"ipv4": None, "ipv6": None} and tools.nft is not None
    assert record(fw.layout)["owned"] == ["nft"]


def test_when_the_old_chain_of_a_switch_cannot_go_the_error_says_the_new_one_is_in(
        fw, tools):
    fw.apply(tcp(8080))
    tools.fail = lambda argv, stdin: (ToolResult(1, "", "busy\n")
                                      if argv[0].endswith("-restore") else None)
    with pytest.raises(FirewallError, match="the nft chain is applied, but vz's iptables"):
        fw.apply(tcp(8080), backend="nft")
    tools.fail = lambda argv, stdin: None
    assert fw.remove().drift == [] and tools.chains["ipv4"] is None and tools.nft is None


def test_a_later_apply_keeps_the_backend_of_the_last(fw, tools):
    fw.apply(tcp(8080), backend="nft")
    assert fw.apply(tcp(9090)).backend == "nft"


# -- status and drift through the tools ------------------------------------------------

def test_status_shows_a_rule_added_by_hand_and_apply_puts_the_chain_right(fw, tools):
    fw.apply(tcp(8080))
    tools.chains["ipv4"].insert(0, "-A VZ-INPUT -p tcp -m tcp --dport 9090 -j ACCEPT")
    assert fw.status().drift == [
        "IPv4: added by hand: -A VZ-INPUT -p tcp -m tcp --dport 9090 -j ACCEPT"]
    fw.apply(tcp(8080))
    assert fw.status().drift == []


def test_status_of_nft_shows_drift(layout):
    tools = FakeTools(have=["nft"])
    fw = Firewall(layout, tools)
    fw.apply(tcp(8080))
    tools.nft = tools.nft.replace("\t\tdrop\n", "")
    assert fw.status().drift == ["nft: removed by hand: drop"]


def test_status_before_any_apply_is_inactive_with_no_drift(fw):
    assert fw.status() == FirewallStatus("iptables", False, [], [], [], None, [])


def test_when_vzslave_was_killed_after_the_restore_status_takes_the_apply(fw, tools):
    """When vzslave dies between the tool's apply and the record's, the record says
    pending; the next request finds the rules in place and records them as applied."""
    fw.apply(tcp(8080))
    pending = dict(record(fw.layout), pending={
        "backend": "iptables", "time": 5.0, "ssh_ports": [22], "ports": ["9090/tcp"],
        "families": ["ipv4", "ipv6"]})
    for family in ("ipv4", "ipv6"):
        tools.chains[family] = render_iptables_rules([22], ["9090/tcp"], family)
    fw._save(pending)
    status = fw.status()
    assert (status.ports, status.drift, status.applied) == (["9090/tcp"], [], 5.0)


def test_when_vzslave_was_killed_before_the_restore_status_says_to_apply_again(fw, tools):
    """When vzslave dies after writing pending but before the tool ran, the record
    never claims the new ports: the last apply stands, and status says it was cut."""
    fw.apply(tcp(8080))
    fw._save(dict(record(fw.layout), pending={
        "backend": "iptables", "time": 5.0, "ssh_ports": [22], "ports": ["9090/tcp"],
        "families": ["ipv4", "ipv6"]}))
    status = fw.status()
    assert status.ports == ["8080/tcp"]
    assert status.drift == ["an apply was interrupted (vzslave stopped midway) and its "
                            "rules are not in place as asked: apply again"]
    assert fw.apply(tcp(9090)).drift == []


def test_when_vzslave_was_killed_in_a_first_apply_the_chain_is_still_vz_to_change(
        fw, tools):
    fw._save({"owned": ["iptables"], "applied": None, "interrupted": False, "pending": {
        "backend": "iptables", "time": 5.0, "ssh_ports": [22], "ports": ["9090/tcp"],
        "families": ["ipv4", "ipv6"]}})
    tools.chains["ipv4"] = ["-A VZ-INPUT -j DROP"]  # neither old nor asked: cut short
    assert fw.apply(tcp(8080)).active


# -- remove ---------------------------------------------------------------------------

def test_remove_deletes_the_jump_and_the_chain_and_the_record(fw, tools):
    fw.apply(tcp(8080))
    status = fw.remove()
    assert (status.active, status.ports, status.applied) == (False, [], None)
    assert tools.chains == {"ipv4": None, "ipv6": None}
    assert tools.input == {"ipv4": [], "ipv6": []}
    with pytest.raises(FileNotFoundError):
        record(fw.layout)


def test_remove_of_an_nft_table_runs_one_transaction(layout):
    tools = FakeTools(have=["nft"])
    fw = Firewall(layout, tools)
    fw.apply(tcp(8080))
    del tools.calls[:]
    fw.remove()
    assert tools.nft is None
    assert [stdin for argv, stdin in tools.calls if argv[1] == "-f"] == [render_nft_remove()]


def test_remove_where_nothing_is_there_changes_nothing(fw, tools):
    fw.remove()
    assert [argv for argv, _ in tools.calls if not argv[0].endswith("-save")] == []


def test_remove_leaves_a_chain_vz_did_not_make(fw, tools):
    tools.chains["ipv4"] = ["-A VZ-INPUT -j ACCEPT"]
    assert fw.remove().drift == [
        "IPv4: chain VZ-INPUT is there, but vz did not make it; vz leaves it alone"]
    assert tools.chains["ipv4"] == ["-A VZ-INPUT -j ACCEPT"]


# -- the real Tools: the seam itself ---------------------------------------------------

def test_a_tool_that_does_not_finish_is_an_error(monkeypatch):
    monkeypatch.setattr(firewall, "TOOL_TIMEOUT", 0.2)
    with pytest.raises(FirewallError, match="did not finish within"):
        Tools().run(["sleep", "5"])


def test_a_tool_reads_the_transaction_on_stdin_and_gets_no_shell():
    done = Tools().run(["cat"], "*filter\n$(touch /tmp/x)\n")
    assert done == ToolResult(0, "*filter\n$(touch /tmp/x)\n", "")


def test_a_tool_that_cannot_run_is_an_error():
    with pytest.raises(FirewallError, match="cannot run /nonexistent"):
        Tools().run(["/nonexistent"])


# -- the ops --------------------------------------------------------------------------

def check(args):
    return check_args("firewall.apply", OPS["firewall.apply"], args)


def test_apply_takes_ports_and_defaults_to_ssh_port_22_and_no_backend():
    assert check({"ports": tcp(8080)}) == {"ports": tcp(8080), "ssh_port": 22,
                                           "backend": None}


@pytest.mark.parametrize("ports,message", [
    ([{"port": "8080", "proto": "tcp"}], r"'ports'\[0\].port must be an integer"),
    (["8080/tcp"], r"'ports'\[0\] must be a map"),
    ([{"port": 8080, "proto": "sctp"}], r"'ports'\[0\].proto must be one of tcp, udp"),
    ([{"port": 0, "proto": "tcp"}], r"from 1 to 65535, not 0"),
    ([{"port": 65536, "proto": "tcp"}], r"from 1 to 65535, not 65536"),
    ([{"port": 8080}], r"must be a map of exactly port, proto, not of port"),
    ([{"port": 8080, "proto": "tcp", "to": 1}], r"exactly port, proto, not of port, proto, to"),
    ([{"port": True, "proto": "tcp"}], r"must be an integer .*, not a boolean"),
], ids=["string", "text", "sctp", "zero", "past", "no-proto", "extra-key", "bool"])
def test_a_malformed_port_is_refused(ports, message):
    with pytest.raises(BadRequestError, match=message):
        check({"ports": ports})


def test_ten_thousand_ports_are_refused_by_the_schema():
    with pytest.raises(BadRequestError, match="at most 1024 elements, not 10000"):
        check({"ports": tcp(*range(1, 10001))})


def test_a_backend_that_is_a_path_is_refused():
    with pytest.raises(BadRequestError, match="must be one of iptables, nft, not '/sbin/nft'"):
        check({"ports": [], "backend": "/sbin/nft"})


def test_the_apply_op_opens_the_port_of_the_session_it_came_over(layout, tools, monkeypatch):
    monkeypatch.setenv("SSH_CONNECTION", "192.0.2.7 50000 192.0.2.1 2222")
    node = Node(layout, Limits())
    node.firewall.tools = tools
    args = check({"ports": tcp(8080), "ssh_port": 0})
    result = OPS["firewall.apply"].handler(node, Call(1, lambda call: iter(())), args)
    assert result["firewall"]["ssh_ports"] == [2222]


def test_the_status_and_remove_ops_take_no_arguments():
    for name in ("firewall.status", "firewall.remove"):
        with pytest.raises(BadRequestError, match="does not take ports"):
            check_args(name, OPS[name], {"ports": []})


# -- the Client -----------------------------------------------------------------------

@pytest.fixture
def client(tmp_path, monkeypatch, tools):
    seen = []

    def wrap(name):
        real = OPS[name]

        def handler(node, call, args):
            node.firewall.tools = tools
            seen.append((name, args))
            return real.handler(node, call, args)
        monkeypatch.setitem(OPS, name, real._replace(handler=handler))

    for name in ("firewall.apply", "firewall.status", "firewall.remove"):
        wrap(name)
    transport = InProcessTransport(str(tmp_path / "node"))
    with Client(transport=transport) as opened:
        opened.seen = seen
        yield opened
    assert transport.failure_on_node is None


def test_the_client_sends_ports_as_maps_of_port_and_proto(client):
    status = client.apply_firewall(["8080/tcp", "53/udp", "9000", (7000, "udp")])
    assert client.seen[0][1]["ports"] == [
        {"port": 8080, "proto": "tcp"}, {"port": 53, "proto": "udp"},
        {"port": 9000, "proto": "tcp"}, {"port": 7000, "proto": "udp"}]
    assert isinstance(status, FirewallStatus) and status.active


def test_the_client_reads_status_and_removes(client):
    client.apply_firewall(["8080/tcp"], backend="nft")
    assert client.firewall().ports == ["8080/tcp"]
    assert not client.remove_firewall().active


def test_the_client_refuses_a_port_that_is_not_a_number_before_sending(client):
    with pytest.raises(ValueError, match="'http/tcp'"):
        client.apply_firewall(["http/tcp"])
    assert client.seen == []


def test_the_node_refuses_a_protocol_the_client_passed_on(client):
    with pytest.raises(BadRequestError, match="proto must be one of tcp, udp"):
        client.apply_firewall(["8080/sctp"])


def test_a_firewall_error_reaches_the_client_with_the_tools_stderr(client, tools):
    tools.fail = lambda argv, stdin: (ToolResult(4, "", "Permission denied (you must be root)\n")
                                      if argv[0].endswith("-restore") else None)
    with pytest.raises(FirewallError, match="the node's rules are as before") as caught:
        client.apply_firewall(["8080/tcp"])
    assert caught.value.details["stderr"] == "Permission denied (you must be root)\n"

