"""The node's firewall: one chain of vz's own in front of INPUT, and nothing else.

A node whose owner asks for it (``firewall: true`` in vz.yml) is told which ports its
apps declare; vz keeps one chain that lets in loopback, replies (conntrack), ICMP
(and ICMPv6, plus DHCPv6 replies to link-local), SSH and those ports, and drops every
other packet that comes in. What vz touches, and nothing else:

    iptables   the chain VZ-INPUT of the filter table, IPv4 and (with ip6tables and
               an IPv6 kernel) IPv6, and one rule "-A INPUT -j VZ-INPUT" put first
               in INPUT when it is missing
    nft        the table "inet vz" (both families), its base chain "input" hooked on
               input at priority 0

iptables-restore is chosen when present (old distributions have nothing else; new
ones ship iptables-nft), else nft; ``backend`` forces one. Every change is one
transaction of the tool: ``iptables-restore --noflush`` of a file that declares
VZ-INPUT (which creates or flushes that chain only), its rules and, when missing,
the jump; ``nft -f`` of a file that deletes and recreates table inet vz. A failed
transaction changes nothing; the IPv4 one is put back as it was when the IPv6 one
fails after it.

SSH is never closed: the chain always accepts the port of the SSH session the
request came over (``SSH_CONNECTION``), the ports the node's sshd listens on, and the
``ssh_port`` asked for (22 by default; 0 for none), and a request that leaves no SSH
port at all is refused. The replies rule takes ``-m conntrack``; where that match
fails (OpenVZ guests) the same file is tried again with ``-m state``.

ROOT/firewall.json holds the backends whose chain vz made (``owned``), what was last
applied and confirmed (``applied``, with the rendered rules and the rules as the tool
listed them right after), and, while an apply runs, what it is applying (``pending``):
the file never says something was applied before the tool said so. A chain or table
of vz's name that vz did not make is never taken over nor removed: apply refuses and
says how to remove it by hand. status lists the chain and compares: whatever differs
from the last apply (rules added, removed or reordered by hand, the chain or the jump
gone) is **drift**. remove deletes the jump and the chain (or the table); on a node
where nothing of vz's is there it does nothing.

Standard library only (Python 3.6+).
"""

import json
import logging
import os
import shutil
import subprocess
import time
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Set, Tuple

from vzslave import fs
from vzslave.config import Layout
from vzslave.errors import BadRequestError, FirewallError
from vzslave.records import FirewallStatus

log = logging.getLogger(__name__)

BACKENDS = ("iptables", "nft")
PROTOS = ("tcp", "udp")
MAX_PORTS = 1024  # declared ports in one request
CHAIN = "VZ-INPUT"
NFT_TABLE = "inet vz"
NFT_HOOK = "type filter hook input priority 0; policy accept;"
TOOL_TIMEOUT = 30.0  # seconds one run of a tool may take
TOOL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CONNTRACK, STATE, CT = "conntrack", "state", "ct"  # how the replies rule matches
_FAMILY_NAMES = {"ipv4": "IPv4", "ipv6": "IPv6", "inet": "nft"}
_INSTALL = "apt install iptables (or nftables; yum install iptables on CentOS)"


# -- the request (sans-I/O) ---------------------------------------------------------

def port_text(number: int, proto: str) -> str:
    """'8080/tcp'."""
    return "{}/{}".format(number, proto)


def declared_ports(ports: Sequence[Dict[str, Any]]) -> List[str]:
    """The declared ports as sorted, unique '8080/tcp' strings (the schema checked them)."""
    unique = {(item["port"], item["proto"]) for item in ports}
    return [port_text(number, proto) for number, proto in sorted(unique)]


def session_port(ssh_connection: Optional[str]) -> Optional[int]:
    """The node's port of the SSH session (SSH_CONNECTION's 4th field), if it has one."""
    fields = (ssh_connection or "").split()
    if len(fields) == 4 and fields[3].isdigit() and 0 < int(fields[3]) < 65536:
        return int(fields[3])
    return None


def ssh_ports_for(ssh_port: int, ssh_connection: Optional[str],
                  listening: Sequence[int] = ()) -> List[int]:
    """Every port SSH must keep: the session's, sshd's listening ones, ``ssh_port``
    (0: none asked). BadRequestError when that leaves none: SSH would be shut out."""
    ports = set(listening)
    if ssh_port:
        ports.add(ssh_port)
    session = session_port(ssh_connection)
    if session is not None:
        ports.add(session)
    if not ports:
        raise BadRequestError(
            "firewall.apply would leave no SSH port open (no ssh_port, no SSH session, "
            "no listening sshd found): give ssh_port", {"argument": "ssh_port"})
    return sorted(ports)


# -- iptables (sans-I/O) --------------------------------------------------------------

class Listing(NamedTuple):
    """vz's chain in one family as the tool lists it: 'ipv4', 'ipv6' or 'inet' (nft)."""

    exists: bool  # the chain VZ-INPUT (nft: the table inet vz) is there
    hooked: bool  # INPUT has "-A INPUT -j VZ-INPUT" (nft: chain input is hooked as vz made it)
    rules: List[str]  # its rules as listed
    jumps: List[str] = []  # iptables: INPUT's rules that jump to VZ-INPUT


NO_LISTING = Listing(False, False, [])


def render_iptables_rules(ssh_ports: Sequence[int], ports: Sequence[str], family: str,
                          match: str = CONNTRACK) -> List[str]:
    """The rules of VZ-INPUT for ``family``, as iptables-save prints them."""
    replies = ("-m conntrack --ctstate RELATED,ESTABLISHED" if match == CONNTRACK
               else "-m state --state RELATED,ESTABLISHED")
    rules = ["-i lo -j ACCEPT", replies + " -j ACCEPT"]
    if family == "ipv4":
        rules.append("-p icmp -j ACCEPT")
    else:
        rules += ["-p ipv6-icmp -j ACCEPT",
                  "-s fe80::/10 -d fe80::/10 -p udp -m udp --sport 547 --dport 546 -j ACCEPT"]
    for number, proto in _open(ssh_ports, ports):
        rules.append("-p {0} -m {0} --dport {1} -j ACCEPT".format(proto, number))
    rules.append("-j DROP")
    return ["-A {} {}".format(CHAIN, rule) for rule in rules]


def _open(ssh_ports: Sequence[int], ports: Sequence[str]) -> List[Tuple[int, str]]:
    """(port, proto) to accept, SSH's first, each once."""
    wanted = [(port, "tcp") for port in ssh_ports]
    for text in ports:
        number, proto = text.split("/")
        if (int(number), proto) not in wanted:
            wanted.append((int(number), proto))
    return wanted


def render_iptables_apply(rules: Sequence[str], add_jump: bool) -> str:
    """One iptables-restore --noflush transaction: VZ-INPUT created or flushed, its
    rules, and the jump first in INPUT when it is missing."""
    lines = ["*filter", ":{} - [0:0]".format(CHAIN)] + list(rules)
    if add_jump:
        lines.append("-I INPUT 1 -j {}".format(CHAIN))
    return "\n".join(lines + ["COMMIT", ""])


def render_iptables_remove(listing: Listing) -> str:
    """The transaction that deletes INPUT's jumps to VZ-INPUT and the chain; '' when
    neither is there."""
    lines = ["-D" + jump[2:] for jump in listing.jumps]
    if listing.exists:
        lines += ["-F {}".format(CHAIN), "-X {}".format(CHAIN)]
    return "\n".join(["*filter"] + lines + ["COMMIT", ""]) if lines else ""


def render_iptables_put_back(before: Listing) -> str:
    """The transaction that puts VZ-INPUT back as ``before`` listed it, after an apply
    (which added the jump if ``before`` had none): a rollback."""
    jump = "-A INPUT -j {}".format(CHAIN)
    if not before.exists:
        return render_iptables_remove(Listing(True, True, [], [jump]))
    lines = ["*filter", ":{} - [0:0]".format(CHAIN)] + before.rules
    if not before.hooked:
        lines.append("-D" + jump[2:])
    return "\n".join(lines + ["COMMIT", ""])


def parse_iptables_save(text: str) -> Listing:
    """VZ-INPUT and INPUT's jumps to it from ``iptables-save -t filter``."""
    exists = False
    rules: List[str] = []
    jumps: List[str] = []
    for line in text.splitlines():
        line = " ".join(line.split())
        if line.startswith(":{} ".format(CHAIN)):
            exists = True
        elif line.startswith("-A {} ".format(CHAIN)):
            rules.append(line)
        elif line.startswith("-A INPUT ") and line.split()[-2:] == ["-j", CHAIN]:
            jumps.append(line)
    plain = "-A INPUT -j {}".format(CHAIN)
    return Listing(exists, exists and plain in jumps, rules, jumps)


def normal_iptables_rule(rule: str) -> str:
    """A rule in one spelling: no implicit '-m tcp'/'-m udp', state lists sorted."""
    words = rule.split()
    out: List[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        if word == "-m" and index + 1 < len(words) and words[index + 1] in PROTOS:
            index += 2
            continue
        out.append(word)
        if word in ("--ctstate", "--state") and index + 1 < len(words):
            out.append(",".join(sorted(words[index + 1].split(","))))
            index += 1
        index += 1
    return " ".join(out)


# -- nft (sans-I/O) -------------------------------------------------------------------

def render_nft_rules(ssh_ports: Sequence[int], ports: Sequence[str]) -> List[str]:
    """The rules of chain input of table inet vz, as ``nft list`` prints them."""
    rules = ['iif "lo" accept', "ct state established,related accept",
             "meta l4proto icmp accept", "meta l4proto ipv6-icmp accept",
             "ip6 saddr fe80::/10 ip6 daddr fe80::/10 udp sport 547 udp dport 546 accept"]
    rules += ["{} dport {} accept".format(proto, number)
              for number, proto in _open(ssh_ports, ports)]
    return rules + ["drop"]


def render_nft_apply(rules: Sequence[str]) -> str:
    """One ``nft -f`` transaction: table inet vz deleted (made first, so that a missing
    one is no error) and made again with its base chain and ``rules``."""
    body = "".join("\t\t{}\n".format(rule) for rule in [NFT_HOOK] + list(rules))
    return ("table {0}\ndelete table {0}\ntable {0} {{\n\tchain input {{\n{1}\t}}\n}}\n"
            .format(NFT_TABLE, body))


def render_nft_remove() -> str:
    """The transaction that deletes table inet vz, and is no error where it is missing."""
    return "table {0}\ndelete table {0}\n".format(NFT_TABLE)


def normal_nft_rule(rule: str) -> str:
    """A statement in one spelling: quotes dropped, 'priority filter' as 0."""
    text = " ".join(rule.replace('"', "").split())
    return text.replace("priority filter;", "priority 0;")


def parse_nft_table(text: str) -> Listing:
    """Chain input of ``nft list table inet vz``; other chains or sets in the table
    are listed among its rules ("chain NAME", "set NAME"), so that drift names them."""
    hooked = False
    rules: List[str] = []
    depth = 0
    block = ""
    for raw in text.splitlines():
        line = " ".join(raw.split())
        if not line or line.startswith("#"):
            continue
        if line.endswith("{"):
            depth += 1
            if depth == 2:
                block = line[:-1].strip()
                if block != "chain input":
                    rules.append(block)
            continue
        if line == "}":
            depth -= 1
            continue
        if depth == 2 and block == "chain input":
            if line.startswith("type "):
                hooked = normal_nft_rule(line) == NFT_HOOK
            else:
                rules.append(line)
    return Listing(True, hooked, rules)


# -- drift (sans-I/O) -----------------------------------------------------------------

def drift(applied: Optional[Dict[str, Any]], listings: Dict[str, Listing],
          owned: bool) -> List[str]:
    """What differs between the last apply and the listings, in words; [] if nothing."""
    found: List[str] = []
    if applied is None:
        for family, listing in sorted(listings.items()):
            if listing.exists:
                found.append("{}: {} is there, but {}".format(
                    _FAMILY_NAMES[family], _what(family),
                    "no apply of it was recorded (interrupted?): apply again or remove it"
                    if owned else "vz did not make it; vz leaves it alone"))
        return found
    backend = applied["backend"]
    normal = normal_nft_rule if backend == "nft" else normal_iptables_rule
    for family in applied["families"]:
        name = _FAMILY_NAMES[family]
        listing = listings.get(family, NO_LISTING)
        if not listing.exists:
            found.append("{}: {} is gone".format(name, _what(family)))
            continue
        if not listing.hooked:
            found.append("{}: {}".format(name, "chain input is no longer hooked on input as "
                                         "vz made it" if backend == "nft" else
                                         "INPUT no longer jumps to {}".format(CHAIN)))
        want = [normal(rule) for rule in applied["listed"][family]]
        have = [normal(rule) for rule in listing.rules]
        extra = [rule for rule in listing.rules if normal(rule) not in want]
        missing = [rule for rule in applied["listed"][family] if normal(rule) not in have]
        found += ["{}: added by hand: {}".format(name, rule) for rule in extra]
        found += ["{}: removed by hand: {}".format(name, rule) for rule in missing]
        if not extra and not missing and want != have:
            found.append("{}: the rules of {} were reordered".format(name, _what(family)))
    return found


def _what(family: str) -> str:
    return "table {}".format(NFT_TABLE) if family == "inet" else "chain {}".format(CHAIN)


# -- the tools (I/O) ------------------------------------------------------------------

class ToolResult(NamedTuple):
    """How a run of a tool ended."""

    returncode: int
    stdout: str
    stderr: str


class Tools(object):
    """What the firewall runs and reads on the node; unit tests pass a fake."""

    def which(self, name: str) -> Optional[str]:
        """The tool's path, looked for in the sbin directories too; None if absent."""
        return shutil.which(name, path=TOOL_PATH)

    def run(self, argv: List[str], stdin: str = "") -> ToolResult:
        """Run a tool (an argv, never a shell line) with ``stdin``, for TOOL_TIMEOUT at
        most; FirewallError if it cannot be run or does not finish."""
        try:
            done = subprocess.run(
                argv, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                universal_newlines=True, timeout=TOOL_TIMEOUT,
                env={"PATH": TOOL_PATH, "LC_ALL": "C"})
        except subprocess.TimeoutExpired as exc:
            raise FirewallError("{} did not finish within {:.0f} s; the node's rules may "
                                "not have changed: check them and apply again".format(
                                    argv[0], TOOL_TIMEOUT), {"tool": argv[0]}) from exc
        except OSError as exc:
            raise FirewallError("cannot run {}: {}".format(argv[0], exc.strerror or exc),
                                {"tool": argv[0]}) from exc
        return ToolResult(done.returncode, done.stdout, done.stderr)

    def has_ipv6(self) -> bool:
        """Whether this network namespace's kernel has IPv6 (ip6tables fails without)."""
        return os.path.exists("/proc/net/if_inet6")

    def sshd_ports(self) -> List[int]:
        """The TCP ports sshd processes listen on (from /proc; [] if none is found)."""
        sockets: Set[str] = set()
        for pid in os.listdir("/proc"):
            try:
                with open("/proc/{}/comm".format(pid)) as comm:
                    if comm.read().strip() != "sshd":
                        continue
                fd_dir = "/proc/{}/fd".format(pid)
                for fd in os.listdir(fd_dir):
                    target = os.readlink(os.path.join(fd_dir, fd))
                    if target.startswith("socket:["):
                        sockets.add(target[8:-1])
            except OSError:  # not a pid, gone meanwhile, or not ours to read
                continue
        ports: List[int] = []
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(table) as source:
                    ports += listening_ports(source.read(), sockets)
            except OSError:
                continue
        return sorted(set(ports))


def listening_ports(table: str, sockets: Set[str]) -> List[int]:
    """The local ports of the LISTEN sockets among ``sockets`` (inode numbers) in a
    /proc/net/tcp or tcp6 table."""
    ports = []
    for row in table.splitlines()[1:]:
        fields = row.split()
        if len(fields) > 9 and fields[3] == "0A" and fields[9] in sockets:
            ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _failed(tool: str, done: ToolResult, changed: str = "the node's rules are as before"
            ) -> FirewallError:
    first = (done.stderr.strip().splitlines() or ["exit status {}".format(done.returncode)])
    return FirewallError("{} failed: {}; {}".format(tool, first[0], changed), {
        "tool": tool, "exit": done.returncode, "stderr": done.stderr[-4096:]})


# -- the backends (I/O through Tools) -------------------------------------------------

class Backend(object):
    """What one backend lists, applies and removes."""

    name = ""
    matches: Tuple[str, ...] = ()  # how the replies rule may match, tried in order

    def __init__(self, tools: Tools) -> None:
        self.tools = tools

    def families(self) -> List[str]:
        """The families it covers here."""
        raise NotImplementedError

    def listings(self) -> Dict[str, Listing]:
        """vz's chain in each family, as the tool lists it now."""
        raise NotImplementedError

    def render(self, ssh_ports: List[int], ports: List[str], match: str) -> Dict[str, List[str]]:
        """The chain's rules in each family."""
        raise NotImplementedError

    def apply(self, rules: Dict[str, List[str]], before: Dict[str, Listing]) -> None:
        """Make the chain hold ``rules`` in every family, or change nothing."""
        raise NotImplementedError

    def remove(self, before: Dict[str, Listing]) -> None:
        """Delete the chain (and the jump) in every family where it is."""
        raise NotImplementedError


class Iptables(Backend):
    """VZ-INPUT through iptables-restore and ip6tables-restore."""

    name = "iptables"
    matches = (CONNTRACK, STATE)
    _TOOLS = {"ipv4": ("iptables-save", "iptables-restore"),
              "ipv6": ("ip6tables-save", "ip6tables-restore")}

    def families(self) -> List[str]:
        v6 = all(self.tools.which(tool) for tool in self._TOOLS["ipv6"])
        return ["ipv4", "ipv6"] if v6 and self.tools.has_ipv6() else ["ipv4"]

    def listings(self) -> Dict[str, Listing]:
        found = {}
        for family in self.families():
            tool = self._TOOLS[family][0]
            done = self.tools.run([tool, "-t", "filter"])
            if done.returncode != 0:
                raise _failed(tool, done, "nothing was changed")
            found[family] = parse_iptables_save(done.stdout)
        return found

    def render(self, ssh_ports: List[int], ports: List[str], match: str) -> Dict[str, List[str]]:
        return {family: render_iptables_rules(ssh_ports, ports, family, match)
                for family in self.families()}

    def apply(self, rules: Dict[str, List[str]], before: Dict[str, Listing]) -> None:
        done: List[str] = []
        for family in sorted(rules):  # ipv4 first
            listing = before.get(family, NO_LISTING)
            try:
                self._restore(family, render_iptables_apply(rules[family], not listing.hooked))
            except FirewallError as exc:
                for earlier in done:  # the families already done go back as they were
                    try:
                        self._restore(earlier, render_iptables_put_back(
                            before.get(earlier, NO_LISTING)))
                    except FirewallError as undo:
                        raise FirewallError(
                            "{}; and putting the {} chain back failed too ({}): apply "
                            "again, or remove".format(exc.message.split(";")[0],
                                                      _FAMILY_NAMES[earlier], undo.message),
                            dict(exc.details, rollback=undo.details)) from exc
                raise
            done.append(family)

    def remove(self, before: Dict[str, Listing]) -> None:
        for family, listing in sorted(before.items()):
            text = render_iptables_remove(listing)
            if text:
                self._restore(family, text)

    def _restore(self, family: str, text: str) -> None:
        tool = self._TOOLS[family][1]
        done = self.tools.run([tool, "--noflush"], text)
        if done.returncode != 0:
            raise _failed(tool, done)


class Nft(Backend):
    """Table inet vz through nft."""

    name = "nft"
    matches = (CT,)

    def families(self) -> List[str]:
        return ["inet"]

    def listings(self) -> Dict[str, Listing]:
        done = self.tools.run(["nft", "list", "table"] + NFT_TABLE.split())
        if done.returncode == 0:
            return {"inet": parse_nft_table(done.stdout)}
        tables = self.tools.run(["nft", "list", "tables"])
        if tables.returncode == 0 and "table {}".format(NFT_TABLE) not in tables.stdout:
            return {"inet": NO_LISTING}
        raise _failed("nft", done if tables.returncode == 0 else tables, "nothing was changed")

    def render(self, ssh_ports: List[int], ports: List[str], match: str) -> Dict[str, List[str]]:
        return {"inet": render_nft_rules(ssh_ports, ports)}

    def apply(self, rules: Dict[str, List[str]], before: Dict[str, Listing]) -> None:
        self._run(render_nft_apply(rules["inet"]))

    def remove(self, before: Dict[str, Listing]) -> None:
        if before.get("inet", NO_LISTING).exists:
            self._run(render_nft_remove())

    def _run(self, text: str) -> None:
        done = self.tools.run(["nft", "-f", "-"], text)
        if done.returncode != 0:
            raise _failed("nft", done)


_BACKENDS = {"iptables": Iptables, "nft": Nft}
_NEEDS = {"iptables": ["iptables-restore", "iptables-save"], "nft": ["nft"]}


# -- the node's firewall --------------------------------------------------------------

class Firewall(object):
    """The node's firewall chain: apply, status, remove; its record in ROOT/firewall.json."""

    def __init__(self, layout: Layout, tools: Optional[Tools] = None) -> None:
        self.layout = layout
        self.tools = tools or Tools()
        self.path = layout.firewall
        self._lock = os.path.join(layout.locks, "firewall.lock")

    def apply(self, ports: Sequence[Dict[str, Any]], ssh_port: int = 22,
              backend: Optional[str] = None, ssh_connection: Optional[str] = None
              ) -> FirewallStatus:
        """Make vz's chain accept SSH and ``ports`` (maps of port and proto), dropping
        every other new packet in; one transaction per family."""
        declared = declared_ports(ports)
        ssh = ssh_ports_for(ssh_port, ssh_connection, self.tools.sshd_ports())
        with fs.exclusive_lock(self._lock, "the firewall"):
            record = self._settled(self._load())
            chosen = self._backend(backend or (record["applied"] or {}).get("backend"))
            before = chosen.listings()
            foreign = [family for family, listing in before.items() if listing.exists]
            if foreign and chosen.name not in record["owned"]:
                raise _foreign(chosen.name, foreign)
            families = chosen.families()
            was_owned = chosen.name in record["owned"]
            record["owned"] = sorted(set(record["owned"]) | {chosen.name})
            record["pending"] = {"backend": chosen.name, "time": time.time(),
                                 "ssh_ports": ssh, "ports": declared, "families": families}
            self._save(record)
            fs.checkpoint(self.layout.root, "firewall-pending")  # the crash tests' hooks
            try:
                match, rules = self._apply(chosen, ssh, declared, before)
                fs.checkpoint(self.layout.root, "firewall-applied")
            except FirewallError:
                record["pending"] = None
                if not was_owned:
                    record["owned"].remove(chosen.name)  # nothing of it was made
                self._save(record)
                raise
            after = chosen.listings()
            applied = dict(record["pending"], match=match, rules=rules,
                           listed={family: after[family].rules for family in families})
            record.update(applied=applied, pending=None, interrupted=False)
            self._save(record)
            for other in [name for name in record["owned"] if name != chosen.name]:
                try:  # a switch of backend: the old one's chain goes
                    old = self._backend(other)
                    old.remove(old.listings())
                except FirewallError as exc:
                    raise FirewallError(
                        "the {} chain is applied, but vz's {} chain could not be removed "
                        "({}): remove again".format(chosen.name, other, exc.message),
                        exc.details) from exc
                record["owned"].remove(other)
                self._save(record)
            return self._status(record, chosen, after)

    def status(self) -> FirewallStatus:
        """What vz applied, whether it is active, and how the chain drifted since."""
        with fs.exclusive_lock(self._lock, "the firewall"):
            record = self._settled(self._load())
            name = (record["applied"] or {}).get("backend") or (
                record["owned"][0] if record["owned"] else None)
            try:
                chosen = self._backend(name)
            except FirewallError:
                if name is not None:
                    raise
                return FirewallStatus(None, False, [], [], [], None, [])
            return self._status(record, chosen, chosen.listings())

    def remove(self) -> FirewallStatus:
        """Delete vz's chain and jump (or table) wherever vz made them; nothing else."""
        with fs.exclusive_lock(self._lock, "the firewall"):
            record = self._settled(self._load())
            for name in list(record["owned"]):
                chosen = self._backend(name)
                chosen.remove(chosen.listings())
                record["owned"].remove(name)
                record.update(applied=None, pending=None, interrupted=False)
                self._save(record)
            fs.unlink_quietly(self.path)
        return self.status()

    # -- inside ----------------------------------------------------------------------

    def _apply(self, chosen: Backend, ssh: List[int], declared: List[str],
               before: Dict[str, Listing]) -> Tuple[str, Dict[str, List[str]]]:
        """Apply with the first replies match the node takes: (the match, the rules)."""
        first: Optional[FirewallError] = None
        for match in chosen.matches:
            rules = chosen.render(ssh, declared, match)
            try:
                chosen.apply(rules, before)
                if first is not None:
                    log.warning("firewall: -m %s failed (%s); applied with -m %s",
                                chosen.matches[0], first.message, match)
                return match, rules
            except FirewallError as exc:
                first = first or exc
        assert first is not None
        raise first

    def _backend(self, name: Optional[str]) -> Backend:
        """The backend of that name, or the first the node has; FirewallError if none."""
        names = [name] if name else list(BACKENDS)
        for candidate in names:
            missing = [tool for tool in _NEEDS[candidate] if not self.tools.which(tool)]
            if not missing:
                return _BACKENDS[candidate](self.tools)
        if name:
            raise FirewallError(
                "the {} backend needs {}, which this node lacks: {}".format(
                    name, ", ".join(missing), _INSTALL), {"backend": name, "missing": missing})
        raise FirewallError("this node has neither iptables-restore nor nft: {}".format(
            _INSTALL), {"missing": ["iptables-restore", "nft"]})

    def _status(self, record: Dict[str, Any], chosen: Backend,
                listings: Dict[str, Listing]) -> FirewallStatus:
        applied = record["applied"]
        owned = chosen.name in record["owned"]
        found = drift(applied if applied and applied["backend"] == chosen.name else None,
                      listings, owned)
        if record.get("interrupted"):
            found.insert(0, "an apply was interrupted (vzslave stopped midway) and its rules "
                            "are not in place as asked: apply again")
        active = owned and bool(listings) and all(
            listing.exists and listing.hooked for listing in listings.values())
        if applied is None:
            return FirewallStatus(chosen.name, active, [], [], found, None, [])
        families = applied["families"]
        return FirewallStatus(chosen.name, active, list(applied["ports"]),
                              list(applied["ssh_ports"]), found, applied["time"],
                              ["ipv4", "ipv6"] if families == ["inet"] else list(families))

    def _settled(self, record: Dict[str, Any]) -> Dict[str, Any]:
        """The record with an apply a killed vzslave left pending decided by what the
        tool lists: applied if the chain holds its rules, else the last apply stands."""
        pending = record["pending"]
        if pending is None:
            return record
        chosen = self._backend(pending["backend"])
        listings = chosen.listings()
        for match in chosen.matches:
            rules = chosen.render(pending["ssh_ports"], pending["ports"], match)
            if set(rules) == set(listings) and all(
                    listings[family].hooked and _same(chosen, rules[family],
                                                      listings[family].rules)
                    for family in rules):
                record.update(applied=dict(pending, match=match, rules=rules, listed={
                    family: listings[family].rules for family in rules}), interrupted=False)
                break
        else:
            record["interrupted"] = True
        record["pending"] = None
        self._save(record)
        return record

    def _load(self) -> Dict[str, Any]:
        try:
            with open(self.path, "rb") as source:
                record = json.loads(source.read().decode("utf-8"))
        except FileNotFoundError:
            record = {}
        except (OSError, ValueError) as exc:
            raise FirewallError("cannot read {}: {}; remove vz's chain by hand and the "
                                "file, then apply again".format(self.path, exc)) from exc
        return {"owned": list(record.get("owned") or []), "applied": record.get("applied"),
                "pending": record.get("pending"),
                "interrupted": bool(record.get("interrupted"))}

    def _save(self, record: Dict[str, Any]) -> None:
        fs.atomic_write(self.path, json.dumps(dict(record, version=1), indent=1,
                                              sort_keys=True).encode(), 0o600)


def _same(chosen: Backend, want: List[str], have: List[str]) -> bool:
    normal = normal_nft_rule if chosen.name == "nft" else normal_iptables_rule
    return [normal(rule) for rule in want] == [normal(rule) for rule in have]


def _foreign(backend: str, families: List[str]) -> FirewallError:
    if backend == "nft":
        how = "nft delete table {}".format(NFT_TABLE)
    else:
        how = "; ".join("{0} -D INPUT -j {1}; {0} -F {1}; {0} -X {1}".format(
            "iptables" if family == "ipv4" else "ip6tables", CHAIN) for family in families)
    return FirewallError(
        "{} exists on this node but vz did not make it, and vz does not take over rules it "
        "did not make: rename or delete it ({}), then apply again".format(
            _what("inet" if backend == "nft" else "ipv4"), how),
        {"backend": backend, "families": families})
