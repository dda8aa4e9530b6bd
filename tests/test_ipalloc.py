"""Public IP allocation (ctdb.failoverd.alloc): CTDB's own scenarios as tables, and properties.

Three tables, every row of which must give exactly the expected map:

* ``CTDB_ROWS``: CTDB 4.17's takeover unit tests (ctdb/tests/UNIT/takeover/*.sh, plus the
  det.004-006 home_nodes cases of newer CTDB), inputs and expected outputs carried over
  as data into our format;
* ``OWN_ROWS``: what those tests do not cover (node states one by one, NoIPFailback,
  NoIPHostOnAllDisabled, groups, IPv6, interfaces, force_rebalance, ties), worked out by
  hand where small;
* ``LAB_ROWS``: transitions observed from the real CTDB 4.17.12 daemons (mixed IPv4/IPv6,
  groups, run-time tunables, all three algorithms).

:func:`reference`, a direct and slow transcription of CTDB's steps, agrees with all three
and then judges the fast code on random clusters.

Row format: ``nodes`` has one letter per node in PNN order -- H healthy, U unhealthy,
D administratively disabled, B banned, S stopped, X disconnected, R healthy but not yet
RUNNING.  ``addresses`` lists addresses and ranges (``10.0.0.1-4``, ``fd00::1-a``), sorted
ascending; ``now`` and ``want`` give one character per address in that order: the PNN
hosting it, or ``-`` for nobody (``now`` of just ``-``: nobody hosts anything).
``groups`` (optional) gives, per address, the nodes whose public_addresses list it
(``01x4 23x2``: four addresses on nodes 0 and 1, then two on nodes 2 and 3); by default
every node lists every address.  IPv4 addresses sit on interface eth1, IPv6 on eth2.
"""

from __future__ import annotations

import ipaddress
import math
import random
from collections import Counter
from dataclasses import dataclass, replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctdb.clusterd.flags import NodeFlag
from ctdb.failoverd.alloc import (
    Algorithm,
    Allocation,
    AllocationRequest,
    Eligibility,
    IPAddress,
    NodeInfo,
    PublicIP,
    Tunables,
    allocate,
    distance,
    eligibility,
    merge_hosted,
)

DET = Algorithm.DETERMINISTIC
NONDET = Algorithm.NONDETERMINISTIC
LCP2 = Algorithm.LCP2

STATES: dict[str, tuple[int, bool]] = {
    "H": (0, True),
    "U": (NodeFlag.UNHEALTHY, True),
    "D": (NodeFlag.PERMANENTLY_DISABLED, True),
    "B": (NodeFlag.BANNED, True),
    "S": (NodeFlag.STOPPED, True),
    "X": (NodeFlag.DISCONNECTED, True),
    "R": (0, False),
}

A9 = "192.168.20.249-254 192.168.21.252-254"
A16 = "10.19.99.250-253 130.216.30.170-181"
A900 = " ".join(f"192.168.{subnet}.1-90" for subnet in range(1, 11))
HOME_DET = (("192.168.21.254", 2), ("192.168.20.251", 1))  # CTDB det.004-006's home_nodes
# CTDB lcp2.030's answer for 900 addresses, 5 nodes, from empty (one /24 a line).
W900 = (
    "142104303243210414210430324321031421043032432102404321013243210104210433214321004321043210"
    "143104232043210434210431024321024343210102432100434321012043210314210430324321014321043210"
    "343210401243210134210430124321043404321012432102404321031243210304210433214321004321043210"
    "441043220343210134210431204321023432104102432100434321012043210314210433214321004321043210"
    "024321034143210304102432314321040410432231432101404321023143210024102431324321003421043210"
    "104321043243210314210430324321041043210342432102140214303243210104210431324321003421043210"
    "143104202343210434210431024321003432104102432102434321010243210314210430324321014321043210"
    "034321042143210404210433124321020343210412432101404321032143210034210433214321004321043210"
    "104321034243210314210430324321041043210342432102104321043243210104210433214321004321043210"
    "104321043243210414210430234321030421043132432102414321003243210104210433214321004321043210"
)


@dataclass(frozen=True)
class Row:
    """One allocation run: the cluster and the current map in, the expected map out."""

    id: str
    what: str
    algorithm: Algorithm
    nodes: str
    addresses: str
    now: str
    want: str
    groups: str = ""
    no_ip_takeover: bool = False
    no_ip_failback: bool = False
    host_on_all_disabled: bool = False  # NoIPHostOnAllDisabled=0
    home: tuple[tuple[str, int], ...] = ()
    force: tuple[int, ...] = ()
    down: tuple[tuple[int, str], ...] = ()  # (pnn, interface) links that are down


# fmt: off
CTDB_ROWS = [
    Row("det.001", "3 nodes, 1 healthy", DET, "UUH", A9, "012012012", "222222222"),
    Row("det.002", "3 nodes, 2 healthy", DET, "HUH", A9, "012012012", "200220200"),
    Row("det.003", "3 nodes, 1 -> all healthy", DET, "HHH", A9, "111111111", "210210210"),
    Row("det.004", "3 nodes, all healthy with home_nodes", DET, "HHH", A9,
        "111111111", "211210212", home=HOME_DET),
    Row("det.005", "3 nodes, 2 healthy with home_nodes", DET, "HUH", A9,
        "012012012", "200200202", home=HOME_DET),
    Row("det.006", "3 nodes, 1 healthy with home_nodes", DET, "UUH", A9,
        "012012012", "222222222", home=HOME_DET),
    Row("lcp2.001", "3 nodes, 3 -> 1 healthy", LCP2, "UUH", A9, "012012012", "222222222"),
    Row("lcp2.002", "3 nodes, 3 -> 2 healthy", LCP2, "HUH", A9, "012012012", "002022022"),
    Row("lcp2.003", "3 nodes, 1 -> all healthy", LCP2, "HHH", A9, "111111111", "102102102"),
    Row("lcp2.004", "3 nodes, 1 -> all healthy, info logging", LCP2, "HHH", A9,
        "111111111", "102102102"),
    Row("lcp2.005", "3 nodes, 1 -> all healthy, debug logging", LCP2, "HHH", A9,
        "111111111", "102102102"),
    Row("lcp2.006", "3 nodes, 0 -> 1 healthy", LCP2, "UHU", A9, "-", "111111111"),
    Row("lcp2.007", "3 nodes, 0 -> 2 healthy", LCP2, "UHH", A9, "-", "221121121"),
    Row("lcp2.008", "3 nodes, 0 -> all healthy", LCP2, "HHH", A9, "-", "210210210"),
    Row("lcp2.009", "3 nodes, 3 healthy -> all disconnected", LCP2, "XXX", A9,
        "012012012", "---------"),
    Row("lcp2.010", "2 disjoint groups of nodes/addresses, a node becomes healthy",
        LCP2, "HHHH", "192.168.140.1-4 192.168.209.101-102",
        "001122", "001123", groups="01x4 23x2"),
    Row("lcp2.011", "2 disjoint groups of nodes/addresses, continue a stopped node",
        LCP2, "HHHH", "9.11.136.44-46 10.11.16.44-46 10.11.17.44-46 10.11.18.44-46 10.11.19.44-46",
        "222131133131133", "202131133131133", groups="02x3 13x12"),
    Row("lcp2.012", "NoIPTakeover - nodes don't gain IPs", LCP2, "HHH", A9,
        "111111111", "111111111", no_ip_takeover=True),
    Row("lcp2.013", "NoIPTakeover: nodes don't lose IPs", LCP2, "HHH", A9,
        "012012012", "012012012", no_ip_takeover=True),
    Row("lcp2.014", "3 nodes, no IPs assigned, all unhealthy", LCP2, "UUU", A9, "-", "---------"),
    Row("lcp2.015", "3 nodes, all IPs assigned, all unhealthy", LCP2, "UUU", A9,
        "000111222", "---------"),
    Row("lcp2.016", "3 nodes, all IPs assigned, 2->3 unhealthy", LCP2, "UUU", A9,
        "222222222", "---------"),
    Row("lcp2.024", "3 nodes, no IPs assigned, all healthy, all in STARTUP runstate",
        LCP2, "RRR", A9,
        "-", "---------"),
    Row("lcp2.025", "3 nodes, no IPs assigned, all healthy, 1 in STARTUP runstate",
        LCP2, "RHH", A9,
        "-", "221121121"),
    Row("lcp2.027", "4 nodes, all IPs assigned, 3->4 unhealthy", LCP2, "HHUH", A16,
        "3210323210103210", "3010313010103310"),
    Row("lcp2.028", "4 nodes, all healthy/assigned, stays unbalanced", LCP2, "HHHH", A16,
        "3010313010103210", "3010313010103210"),
    Row("lcp2.029", "4 nodes, some IPs unassigned on target nodes (merged per-node views)",
        LCP2, "HHHH", A16,
        "3-103-3-10103210", "3210323210103210"),
    Row("lcp2.030", "900 IPs, 5 nodes, 0 -> 5 healthy", LCP2, "HHHHH", A900, "-", W900),
    Row("lcp2.031", "12+4 IPs, 4 nodes, 3 -> 4 healthy", LCP2, "HHHH", A16,
        "1231212331131232", "1230212301130230"),
    Row("lcp2.032/1", "12+4 IPs, 4 nodes, multiple transitions", LCP2, "HHHH", A16,
        "0201012201001212", "0231012301031232"),
    Row("lcp2.032/2", "12+4 IPs, 4 nodes, multiple transitions", LCP2, "SHHH", A16,
        "0231012301031232", "1231212331131232"),
    Row("lcp2.032/3", "12+4 IPs, 4 nodes, multiple transitions", LCP2, "HHHH", A16,
        "1231212331131232", "1230212301130230"),
    Row("lcp2.032/4", "12+4 IPs, 4 nodes, multiple transitions", LCP2, "HSHH", A16,
        "1230212301130230", "0230232300230230"),
    Row("lcp2.032/5", "12+4 IPs, 4 nodes, multiple transitions", LCP2, "HHHH", A16,
        "0230232300230230", "0231232301230110"),
    Row("lcp2.032/6", "12+4 IPs, 4 nodes, multiple transitions", LCP2, "HHSH", A16,
        "0231232301230110", "0131031301330110"),
    Row("lcp2.032/7", "12+4 IPs, 4 nodes, multiple transitions", LCP2, "HHHH", A16,
        "0131031301330110", "0132031302320112"),
    Row("lcp2.032/8", "12+4 IPs, 4 nodes, multiple transitions", LCP2, "HHHS", A16,
        "0132031302320112", "0102011202020112"),
    Row("lcp2.032/9", "12+4 IPs, 4 nodes, multiple transitions", LCP2, "HHHH", A16,
        "0102011202020112", "0132011203023132"),
    Row("lcp2.032/10", "12+4 IPs, 4 nodes, multiple transitions", LCP2, "SHHH", A16,
        "0132011203023132", "2132311223123132"),
    Row("lcp2.032/11", "12+4 IPs, 4 nodes, multiple transitions", LCP2, "HHHH", A16,
        "2132311223123132", "2130311203123002"),
    Row("lcp2.032/12", "12+4 IPs, 4 nodes, multiple transitions", LCP2, "HSHH", A16,
        "2130311203123002", "2030320203323002"),
    Row("lcp2.032/13", "12+4 IPs, 4 nodes, multiple transitions", LCP2, "HHHH", A16,
        "2030320203323002", "2031320213321001"),
    Row("lcp2.032/14", "12+4 IPs, 4 nodes, multiple transitions", LCP2, "HHSH", A16,
        "2031320213321001", "1031300113331001"),
    Row("lcp2.032/15", "12+4 IPs, 4 nodes, multiple transitions", LCP2, "HHHH", A16,
        "1031300113331001", "1032300123321021"),
    Row("lcp2.032/16", "12+4 IPs, 4 nodes, multiple transitions", LCP2, "HHHS", A16,
        "1032300123321021", "1002100122021021"),
    Row("lcp2.032/17", "12+4 IPs, 4 nodes, multiple transitions", LCP2, "HHHH", A16,
        "1002100122021021", "1032100123021323"),
    Row("lcp2.033/1", "12+4 IPs, 4 nodes, 2 -> 3 -> 4 healthy", LCP2, "HHHX", A16,
        "0101010110101001", "0102012120101202"),
    Row("lcp2.033/2", "12+4 IPs, 4 nodes, 2 -> 3 -> 4 healthy", LCP2, "HHHH", A16,
        "0102012120101202", "0132012320101332"),
    Row("lcp2.034", "3 nodes, 1 without IP addresses", LCP2, "HHH", "192.168.140.1-4",
        "-", "1010", groups="01x4"),
    Row("lcp2.035", "900 IPs, all 5 nodes healthy, all assigned, no-op", LCP2, "HHHHH", A900,
        W900, W900),
    Row("nondet.001", "3 nodes, 1 healthy", NONDET, "UUH", A9, "012012012", "222222222"),
    Row("nondet.002", "3 nodes, 2 healthy", NONDET, "HUH", A9, "012012012", "002022002"),
    Row("nondet.003", "3 nodes, 1 -> all healthy", NONDET, "HHH", A9, "111111111", "111202020"),
]
# fmt: on

MIXED = "10.1.0.1-4 10.2.0.1-2 fd00::1-4 fd00:0:0:1::1-2"

# fmt: off
OWN_ROWS = [
    # Each way a node stops being eligible gives CTDB's lcp2.002 / det.002 / nondet.002 answer.
    Row("own.banned", "banned node's addresses fail over", LCP2, "HBH", A9,
        "012012012", "002022022"),
    Row("own.stopped", "stopped node's addresses fail over", LCP2, "HSH", A9,
        "012012012", "002022022"),
    Row("own.disconnected", "disconnected node's addresses fail over", LCP2, "HXH", A9,
        "012012012", "002022022"),
    Row("own.disabled", "administratively disabled node", LCP2, "HDH", A9,
        "012012012", "002022022"),
    Row("own.not-running", "node not yet RUNNING", LCP2, "HRH", A9, "012012012", "002022022"),
    Row("own.det.banned", "deterministic, banned node", DET, "HBH", A9,
        "012012012", "200220200"),
    Row("own.nondet.stopped", "non-deterministic, stopped node", NONDET, "HSH", A9,
        "012012012", "002022002"),
    # NoIPFailback: a returning node gets nothing back; failover still happens.
    Row("own.nofailback.lcp2", "NoIPFailback, nodes 0 and 2 return", LCP2, "HHH", A9,
        "111111111", "111111111", no_ip_failback=True),
    Row("own.nofailback.nondet", "NoIPFailback, nodes 0 and 2 return", NONDET, "HHH", A9,
        "111111111", "111111111", no_ip_failback=True),
    Row("own.nofailback.det", "NoIPFailback is ignored by deterministic", DET, "HHH", A9,
        "111111111", "210210210", no_ip_failback=True),
    Row("own.nofailback.failover", "NoIPFailback still fails over", LCP2, "HUH", A9,
        "012012012", "002022022", no_ip_failback=True),
    Row("own.nofailback.nondet-failover", "NoIPFailback still fails over", NONDET, "HUH", A9,
        "012012012", "002022002", no_ip_failback=True),
    # NoIPTakeover: nothing moves to another node (deterministic still sends addresses home).
    Row("own.notakeover.failed", "NoIPTakeover, a node fails: its addresses go unhosted",
        LCP2, "HUH", A9, "012012012", "0-20-20-2", no_ip_takeover=True),
    Row("own.notakeover.nondet", "NoIPTakeover, nodes return", NONDET, "HHH", A9,
        "111111111", "111111111", no_ip_takeover=True),
    Row("own.notakeover.det", "NoIPTakeover does not stop deterministic going home", DET,
        "HHH", A9, "111111111", "210210210", no_ip_takeover=True),
    # NoIPHostOnAllDisabled=0 (before CTDB 4.9): disabled nodes serve while none is healthy.
    Row("own.alldisabled.host", "all unhealthy, NoIPHostOnAllDisabled=0", LCP2, "UUU", A9,
        "-", "210210210", host_on_all_disabled=True),
    Row("own.alldisabled.keep", "all disabled, NoIPHostOnAllDisabled=0, all stay", LCP2,
        "UDU", A9, "012012012", "012012012", host_on_all_disabled=True),
    Row("own.alldisabled.inactive", "all disabled, a banned node still never hosts", LCP2,
        "UBU", A9, "012012012", "002022022", host_on_all_disabled=True),
    Row("own.alldisabled.onehealthy", "one healthy node: disabled ones do not host", LCP2,
        "UHU", A9, "012012012", "111111111", host_on_all_disabled=True),
    # Groups: nodes with different public_addresses files.
    Row("own.groups.det", "groups, deterministic", DET, "HHHH", "10.0.0.1-4",
        "-", "1032", groups="01x2 23x2"),
    Row("own.groups.nondet", "groups, non-deterministic", NONDET, "HHHH", "10.0.0.1-4",
        "-", "1032", groups="01x2 23x2"),
    Row("own.groups.lcp2", "groups, LCP2", LCP2, "HHHH", "10.0.0.1-4",
        "-", "1032", groups="01x2 23x2"),
    Row("own.groups.nobody", "addresses only an unhealthy node lists", LCP2, "HHU",
        "10.0.0.1-2", "22", "--", groups="2x2"),
    Row("own.groups.unlisted-claim", "a claim by a node not listing the address is ignored",
        LCP2, "HH", "10.0.0.1-2", "11", "00", groups="0x2"),
    # IPv6, alone and mixed with IPv4.
    Row("own.v6.small", "one IPv4 and one IPv6 address per node", LCP2, "HH",
        "192.168.1.1-2 fd00::1-2", "-", "1010"),
    Row("own.v6.det-order", "IPv6 sorts above IPv4 in CTDB's list", DET, "HHH",
        "10.0.0.1-2 fd00::1", "-", "210"),
    # Each node gets two IPv4 and two IPv6 addresses, as spread as the subnets allow.
    Row("own.v6.empty", "mixed, from empty", LCP2, "HHH", MIXED, "-", "210210012210"),
    Row("own.v6.fail", "mixed, node 1 fails", LCP2, "HUH", MIXED,
        "210210012210", "200220002220"),
    Row("own.v6.return", "mixed, node 1 returns", LCP2, "HHH", MIXED,
        "200220002220", "201120012120"),
    Row("own.v6.nondet", "mixed, non-deterministic from empty", NONDET, "HHH", MIXED,
        "-", "210210210210"),
    Row("own.v6.det", "mixed, deterministic, node 2 unhealthy", DET, "HHU", MIXED,
        "-", "110010110010"),
    # home_nodes: out-of-range PNNs are ignored; only deterministic uses the file.
    Row("own.home.range", "home_nodes PNN out of range is ignored", DET, "HHH", A9,
        "-", "210210210", home=(("192.168.20.249", 7),)),
    Row("own.home.lcp2", "LCP2 ignores home_nodes", LCP2, "HHH", A9, "-", "210210210",
        home=HOME_DET),
    # force_rebalance (ctdb reloadips): LCP2 may move onto a node that already hosts.
    Row("own.force", "lcp2.028 with node 2 forced to rebalance", LCP2, "HHHH", A16,
        "3010313010103210", "3012313012103220", force=(2,)),
    Row("own.force.nofailback", "NoIPFailback wins over force_rebalance", LCP2, "HHHH", A16,
        "3010313010103210", "3010313010103210", force=(2,), no_ip_failback=True),
    Row("own.force.cap", "forced nodes: the cheapest move would overload its target", LCP2,
        "HHH", "5.213.79.191 21.246.193.194 40.82.89.183 94.246.170.30 104.106.237.208 "
        "104.106.237.218 104.106.237.223 113.236.30.109 132.245.107.5 132.245.121.215 "
        "132.245.186.71 132.245.188.111", "020211020012", "211120020102",
        groups="012 01 1 01 02 0 012x2 01 012 0 2", force=(0, 2)),
    # Equal imbalances: the source is the lowest PNN among them, every round afresh.
    Row("own.ties", "rebalancing through ties in imbalance", LCP2, "HHHHHH",
        "192.168.1.1 192.168.1.10 192.168.1.17 192.168.1.28 192.168.1.35 192.168.1.38 "
        "192.168.1.42 192.168.1.55 192.168.1.58", "500525505", "504125103"),
    # Interfaces: an address is usable while one of its interfaces is up.
    Row("own.link.down", "eth1 down on node 1: it keeps only its IPv6 addresses", LCP2, "HHH",
        "10.0.0.1-3 fd00::1-3", "012012", "002012", down=((1, "eth1"),)),
]
# fmt: on


# Observed from Debian's Samba CTDB 4.17.12 (2:4.17.12+dfsg-0+deb12u4): three ctdbd in
# network namespaces, public addresses loaded with `ctdb reloadips all`, then one action
# per row; `now` is the map before it, `want` the map CTDB settled on (`ctdb ip all`)
# after `ctdb ipreallocate`.  Covers what CTDB's unit tests do not: IPv4 mixed with IPv6,
# IPv6 differing in the first word, groups, and the tunables set at run time.
LAB_V6 = "10.0.0.1-2 2001:db8::1-3 3001:db8::1-3 2001:db9::1-2"
LAB_G = "10.0.0.1-2 10.9.0.1-3 2001:db8::1-3 3001:db8::1-3 2001:db9::1-2"
LAB_GROUPS = "01x2 012x3 12x8"  # node 0 has no IPv6, node 2 no 10.0.0.x

# fmt: off
LAB_ROWS = [
    Row("lab.01", "load mixed IPv4/IPv6 (from empty)", LCP2, "HHH", MIXED, "-", "210210012210"),
    Row("lab.02", "ctdb disable, node 1", LCP2, "HDH", MIXED, "210210012210", "200220002220"),
    Row("lab.03", "ctdb enable, node 1", LCP2, "HHH", MIXED, "200220002220", "201120012120"),
    Row("lab.04", "ctdb ban, node 2", LCP2, "HHB", MIXED, "201120012120", "001110010110"),
    Row("lab.05", "ctdb unban, node 2", LCP2, "HHH", MIXED, "001110010110", "021210012210"),
    Row("lab.06", "ctdb stop, node 0", LCP2, "SHH", MIXED, "021210012210", "121212112212"),
    Row("lab.07", "ctdb continue, node 0", LCP2, "HHH", MIXED, "121212112212", "120012010212"),
    Row("lab.08", "setvar NoIPFailback 1", LCP2, "HHH", MIXED,
        "120012010212", "120012010212", no_ip_failback=True),
    Row("lab.09", "ctdb disable, node 1", LCP2, "HDH", MIXED,
        "120012010212", "220002000222", no_ip_failback=True),
    Row("lab.10", "ctdb enable, node 1", LCP2, "HHH", MIXED,
        "220002000222", "220002000222", no_ip_failback=True),
    Row("lab.11", "setvar NoIPFailback 0", LCP2, "HHH", MIXED, "220002000222", "210012001212"),
    Row("lab.12", "ctdb ipreallocate", LCP2, "HHH", MIXED, "210012001212", "210012001212"),
    Row("lab.13", "setvar NoIPTakeover 1", LCP2, "HHH", MIXED,
        "210012001212", "210012001212", no_ip_takeover=True),
    Row("lab.14", "ctdb disable, node 2", LCP2, "HHD", MIXED,
        "210012001212", "-1001-001-1-", no_ip_takeover=True),
    Row("lab.15", "ctdb enable, node 2", LCP2, "HHH", MIXED,
        "-1001-001-1-", "-1001-001-1-", no_ip_takeover=True),
    Row("lab.16", "setvar NoIPTakeover 0", LCP2, "HHH", MIXED, "-1001-001-1-", "210012001212"),
    Row("lab.17", "ctdb ipreallocate", LCP2, "HHH", MIXED, "210012001212", "210012001212"),
    Row("lab.18", "setvar IPAllocAlgorithm 1", NONDET, "HHH", MIXED,
        "210012001212", "210012001212"),
    Row("lab.19", "ctdb disable, node 2", NONDET, "HHD", MIXED, "210012001212", "110010001110"),
    Row("lab.20", "ctdb enable, node 2", NONDET, "HHH", MIXED, "110010001110", "110010021222"),
    Row("lab.21", "setvar IPAllocAlgorithm 0", DET, "HHH", MIXED, "110010021222", "210210210210"),
    Row("lab.22", "ctdb disable, node 0", DET, "DHH", MIXED, "210210210210", "212211212211"),
    Row("lab.23", "ctdb enable, node 0", DET, "HHH", MIXED, "212211212211", "210210210210"),
    Row("lab.24", "setvar IPAllocAlgorithm 2", LCP2, "HHH", MIXED, "210210210210", "210210210210"),
    Row("lab.25", "ctdb disable, node 1", LCP2, "HDH", MIXED, "210210210210", "200220220200"),
    Row("lab.26", "ctdb enable, node 1", LCP2, "HHH", MIXED, "200220220200", "201210210210"),
    Row("lab.27", "reload: IPv6 differing in the first word", LCP2, "HHH", LAB_V6,
        "-", "1010202210"),
    Row("lab.28", "ctdb disable, node 0", LCP2, "DHH", LAB_V6, "1010202210", "1212212211"),
    Row("lab.29", "ctdb enable, node 0", LCP2, "HHH", LAB_V6, "1212212211", "1210202210"),
    Row("lab.30", "ctdb disable, node 2", LCP2, "HHD", LAB_V6, "1210202210", "1010101010"),
    Row("lab.31", "ctdb enable, node 2", LCP2, "HHH", LAB_V6, "1010101010", "1010202210"),
    Row("lab.32", "ctdb stop, node 1", LCP2, "HSH", LAB_V6, "1010202210", "2000202220"),
    Row("lab.33", "ctdb continue, node 1", LCP2, "HHH", LAB_V6, "2000202220", "1010202210"),
    Row("lab.34", "reload: groups, all nodes gain 10.9.0.x", LCP2, "HHH", LAB_G,
        "10---10202210", "1002012212211", groups=LAB_GROUPS, force=(0, 1, 2)),
    Row("lab.35", "ctdb disable, node 1", LCP2, "HDH", LAB_G,
        "1002012212211", "0002022222222", groups=LAB_GROUPS),
    Row("lab.36", "ctdb enable, node 1", LCP2, "HHH", LAB_G,
        "0002022222222", "0002021221121", groups=LAB_GROUPS),
    Row("lab.37", "ctdb ban, node 0", LCP2, "BHH", LAB_G,
        "0002021221121", "1122121221121", groups=LAB_GROUPS),
    Row("lab.38", "ctdb unban, node 0", LCP2, "HHH", LAB_G,
        "1122121221121", "0020121221121", groups=LAB_GROUPS),
    Row("lab.39", "setvar IPAllocAlgorithm 0", DET, "HHH", LAB_G,
        "0020121221121", "0010212211212", groups=LAB_GROUPS),
    Row("lab.40", "ctdb disable, node 2", DET, "HHD", LAB_G,
        "0010212211212", "0010011111111", groups=LAB_GROUPS),
    Row("lab.41", "ctdb enable, node 2", DET, "HHH", LAB_G,
        "0010011111111", "0010212211212", groups=LAB_GROUPS),
    Row("lab.42", "setvar IPAllocAlgorithm 1", NONDET, "HHH", LAB_G,
        "0010212211212", "0010212211212", groups=LAB_GROUPS),
    Row("lab.43", "ctdb disable, node 1", NONDET, "HDH", LAB_G,
        "0010212211212", "0000222222222", groups=LAB_GROUPS),
    Row("lab.44", "ctdb enable, node 1", NONDET, "HHH", LAB_G,
        "0000222222222", "0000222221111", groups=LAB_GROUPS),
]
# fmt: on


def expand(spec: str) -> list[IPAddress]:
    """``10.0.0.1-4 fd00::1-a`` -> the addresses, ascending (the range end is in the
    notation of the last field: decimal for IPv4, hex for IPv6)."""
    out: list[IPAddress] = []
    for item in spec.split():
        first, _, last = item.partition("-")
        start = ipaddress.ip_address(first)
        if not last:
            out.append(start)
            continue
        bits = 8 if start.version == 4 else 16
        end = int(last, 10 if start.version == 4 else 16)
        base = int(start) & ~((1 << bits) - 1)
        out.extend(ipaddress.ip_address(v) for v in range(int(start), base + end + 1))
    return sorted(out, key=lambda a: (a.version != 4, int(a)))


def groups_of(spec: str, count: int, num_nodes: int) -> list[list[int]]:
    if not spec:
        return [list(range(num_nodes))] * count
    out: list[list[int]] = []
    for item in spec.split():
        nodes, _, times = item.partition("x")
        out += [[int(c) for c in nodes]] * int(times or 1)
    assert len(out) == count, "groups must cover every address"
    return out


def build(row: Row) -> tuple[list[IPAddress], AllocationRequest]:
    addrs = expand(row.addresses)
    groups = groups_of(row.groups, len(addrs), len(row.nodes))
    ips: list[list[PublicIP]] = [[] for _ in row.nodes]
    for address, listed_on in zip(addrs, groups, strict=True):
        for pnn in listed_on:
            ips[pnn].append(PublicIP(address, ("eth1",) if address.version == 4 else ("eth2",)))
    nodes = tuple(
        NodeInfo(
            tuple(ips[pnn]),
            eligibility(STATES[letter][0], running=STATES[letter][1]),
            frozenset(i for p, i in row.down if p == pnn),
        )
        for pnn, letter in enumerate(row.nodes)
    )
    assert row.now == "-" or len(row.now) == len(addrs), row.id
    current = (
        {}
        if row.now == "-"
        else {a: int(c) for a, c in zip(addrs, row.now, strict=True) if c != "-"}
    )
    request = AllocationRequest(
        nodes,
        current,
        Tunables(
            no_ip_failback=row.no_ip_failback,
            no_ip_takeover=row.no_ip_takeover,
            no_ip_host_on_all_disabled=not row.host_on_all_disabled,
            algorithm=row.algorithm,
        ),
        home_nodes={ipaddress.ip_address(a): p for a, p in row.home},
        force_rebalance=frozenset(row.force),
    )
    return addrs, request


def render(addrs: list[IPAddress], result: Allocation) -> str:
    return "".join("-" if result[a] is None else str(result[a]) for a in addrs)


# -- A direct transcription of CTDB's steps, to check the fast version against --------


def ctdb_distance(a: IPAddress, b: IPAddress) -> int:
    """ip_distance as CTDB computes it: word by word, counting leading zero bits."""
    ka, kb = int(a), int(b)
    total = 0
    for shift in (96, 64, 32, 0):
        x = ((ka ^ kb) >> shift) & 0xFFFFFFFF
        if x == 0:
            total += 32
            continue
        while not x & 0x80000000:
            x <<= 1
            total += 1
    return total


def reference(request: AllocationRequest) -> Allocation:  # noqa: PLR0912
    """CTDB's ipalloc with everything recomputed from scratch (fine for a dozen addresses)."""
    nodes, tun, n = request.nodes, request.tunables, len(request.nodes)
    states = [node.eligibility for node in nodes]
    if not tun.no_ip_host_on_all_disabled and Eligibility.ELIGIBLE not in states:
        may = [s is not Eligibility.INELIGIBLE for s in states]
    else:
        may = [s is Eligibility.ELIGIBLE for s in states]
    usable = [node.usable() for node in nodes]
    ips = sorted(
        set().union(*(node.addresses for node in nodes)),
        key=lambda a: (int(a), a.version),
        reverse=True,
    )

    def host(p: int, i: int) -> bool:
        return may[p] and ips[i] in usable[p]

    def take(p: int, i: int) -> bool:
        return not tun.no_ip_takeover and host(p, i)

    pnn: list[int | None] = []
    for a in ips:
        c = request.current.get(a)
        pnn.append(c if c is not None and 0 <= c < n and a in nodes[c].addresses else None)

    def coverage(p: int) -> int:
        return sum(1 for q in pnn if q == p)

    def unassign() -> None:
        for i, p in enumerate(pnn):
            if p is not None and not host(p, i):
                pnn[i] = None

    def takeover(i: int) -> None:
        best = None
        for p in range(n):
            if take(p, i) and (best is None or coverage(p) < coverage(best)):
                best = p
        if best is not None:
            pnn[i] = best

    def allocate_unassigned() -> None:
        for i in range(len(ips)):
            if pnn[i] is None:
                takeover(i)

    def dsum(i: int, p: int) -> int:
        return sum(
            ctdb_distance(ips[i], ips[k]) ** 2 for k in range(len(ips)) if pnn[k] == p and k != i
        )

    if tun.algorithm is DET:
        for i, a in enumerate(ips):
            home = request.home_nodes.get(a)
            pnn[i] = home if home is not None and 0 <= home < n else i % n
        unassign()
        allocate_unassigned()
    elif tun.algorithm is NONDET:
        unassign()
        allocate_unassigned()
        retries = 0
        again = not tun.no_ip_failback
        while again:
            again = False
            for i in range(len(ips)):
                if pnn[i] is None:
                    continue
                takers = [p for p in range(n) if take(p, i)]
                if not takers:
                    continue
                hi = lo = takers[0]
                for p in takers:
                    if coverage(p) > coverage(hi):
                        hi = p
                    if coverage(p) < coverage(lo):
                        lo = p
                if coverage(hi) > coverage(lo) + 1 and retries < len(ips) + 5:
                    takeover(next(k for k in range(len(ips)) if pnn[k] == hi))
                    retries += 1
                    again = True
                    break
    else:
        unassign()
        imbalance = [
            sum(
                ctdb_distance(ips[i], ips[k]) ** 2
                for i in range(len(ips))
                for k in range(i + 1, len(ips))
                if pnn[i] == p and pnn[k] == p
            )
            for p in range(n)
        ]
        candidates = [all(q != p for q in pnn) for p in range(n)]
        for p in request.force_rebalance:
            if 0 <= p < n:
                candidates[p] = True
        while True:
            found: tuple[int, int, int] | None = None
            for i in range(len(ips)):
                if pnn[i] is not None:
                    continue
                for p in range(n):
                    if take(p, i) and (found is None or dsum(i, p) < found[0]):
                        found = (dsum(i, p), i, p)
            if found is None:
                break
            cost, i, p = found
            pnn[i] = p
            imbalance[p] += cost
        if not tun.no_ip_failback and any(candidates):
            moved = True
            while moved:
                moved = False
                for src in sorted(range(n), key=lambda p: -imbalance[p]):
                    if imbalance[src] == 0:
                        break
                    best: tuple[int, int, int, int] | None = None
                    for i in range(len(ips)):
                        if pnn[i] != src:
                            continue
                        src_cost = dsum(i, src)
                        src_after = imbalance[src] - src_cost
                        for dst in range(n):
                            if not candidates[dst] or not take(dst, i):
                                continue
                            dst_cost = dsum(i, dst)
                            dst_after = imbalance[dst] + dst_cost
                            if (
                                dst_after < imbalance[src]
                                and dst_cost < src_cost
                                and (best is None or src_after + dst_after < best[0] + best[1])
                            ):
                                best = (src_after, dst_after, i, dst)
                    if best is not None:
                        imbalance[src], imbalance[best[3]] = best[0], best[1]
                        pnn[best[2]] = best[3]
                        moved = True
                        break
    return dict(zip(ips, pnn, strict=True))


# -- Tables ------------------------------------------------------------------------------


@pytest.mark.parametrize("row", CTDB_ROWS, ids=lambda r: r.id)
def test_ctdb_scenario(row: Row) -> None:
    """Every CTDB 4.17 takeover unit test gives exactly CTDB's expected map."""
    addrs, request = build(row)
    assert render(addrs, allocate(request)) == row.want


@pytest.mark.parametrize("row", OWN_ROWS, ids=lambda r: r.id)
def test_own_scenario(row: Row) -> None:
    addrs, request = build(row)
    assert render(addrs, allocate(request)) == row.want


@pytest.mark.parametrize("row", LAB_ROWS, ids=lambda r: r.id)
def test_samba_ctdb_lab(row: Row) -> None:
    """Every transition observed from the real CTDB 4.17.12 daemons comes out the same."""
    addrs, request = build(row)
    assert render(addrs, allocate(request)) == row.want


@pytest.mark.parametrize(
    "row",
    [r for r in CTDB_ROWS + OWN_ROWS + LAB_ROWS if len(expand(r.addresses)) <= 20],
    ids=lambda r: r.id,
)
def test_reference_agrees(row: Row) -> None:
    """The straight transcription agrees with the tables too (so it can judge the rest)."""
    addrs, request = build(row)
    assert render(addrs, reference(request)) == row.want


# -- The metric, the inputs, the tunables ------------------------------------------------


def test_distance_is_ctdbs() -> None:
    """IPv4 counts as ::a.b.c.d; every 32-bit word counts on its own (not a plain prefix)."""
    a, b = ipaddress.ip_address("192.168.20.249"), ipaddress.ip_address("192.168.20.250")
    assert distance(int(a), int(b)) == 96 + 30 == ctdb_distance(a, b)
    v6a, v6b = ipaddress.ip_address("2001:db8::1"), ipaddress.ip_address("3001:db8::1")
    assert distance(int(v6a), int(v6b)) == 3 + 96 == ctdb_distance(v6a, v6b)
    v4 = ipaddress.ip_address("10.0.0.1")
    assert distance(int(v4), int(ipaddress.ip_address("fd00::1"))) == 0 + 32 + 32 + 4


def test_imbalance_matches_ctdbs_log() -> None:
    """The sums CTDB logs in lcp2.005 (all of A9 on one node) come out of our metric."""
    addrs = expand(A9)

    def cost(a: IPAddress) -> int:
        return sum(distance(int(a), int(b)) ** 2 for b in addrs if b != a)

    assert sum(cost(a) for a in addrs) // 2 == 539166
    assert cost(ipaddress.ip_address("192.168.21.254")) == 116718
    assert cost(ipaddress.ip_address("192.168.20.253")) == 121363
    assert cost(ipaddress.ip_address("192.168.20.249")) == 121110


def test_merge_hosted_trusts_each_node_about_itself() -> None:
    """CTDB's merge (lcp2.029): each node speaks for itself; the higher PNN wins a clash."""
    a, b = ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("10.0.0.2")
    assert merge_hosted({2: [a], 0: [a, b]}) == {a: 2, b: 0}


def test_eligibility_from_flags() -> None:
    assert eligibility(0) is Eligibility.ELIGIBLE
    assert eligibility(NodeFlag.UNHEALTHY) is Eligibility.DISABLED
    assert eligibility(NodeFlag.PERMANENTLY_DISABLED) is Eligibility.DISABLED
    for flag in (NodeFlag.BANNED, NodeFlag.STOPPED, NodeFlag.DISCONNECTED, NodeFlag.DELETED):
        assert eligibility(flag | NodeFlag.UNHEALTHY) is Eligibility.INELIGIBLE
    assert eligibility(0, running=False) is Eligibility.INELIGIBLE
    assert eligibility(0, lock_side=False) is Eligibility.INELIGIBLE


def test_tunables() -> None:
    assert Tunables() == Tunables.from_values({})
    assert Algorithm.from_tunable(7) is LCP2  # CTDB falls back to LCP2 too
    t = Tunables.from_values(
        {"NoIPFailback": 1, "NoIPTakeover": 1, "NoIPHostOnAllDisabled": 0, "IPAllocAlgorithm": 1}
    )
    assert t == Tunables(True, True, False, NONDET)


def test_link_with_a_second_interface_up_keeps_the_address() -> None:
    a = ipaddress.ip_address("10.0.0.1")
    node = NodeInfo((PublicIP(a, ("eth1", "eth2")),), down_interfaces=frozenset({"eth1"}))
    assert node.usable() == {a}
    assert allocate(AllocationRequest((node,), {})) == {a: 0}
    gone = replace(node, down_interfaces=frozenset({"eth1", "eth2"}))
    assert allocate(AllocationRequest((gone,), {a: 0})) == {a: None}


def test_nothing_to_do() -> None:
    assert allocate(AllocationRequest((), {})) == {}
    for algorithm in Algorithm:
        request = AllocationRequest((NodeInfo(),), {}, Tunables(algorithm=algorithm))
        assert allocate(request) == {}


# -- Properties --------------------------------------------------------------------------

POOL = expand("10.0.0.1-8 10.0.1.1-4 192.168.7.1-3 fd00::1-6 fd00:0:0:1::1-3 2001:db8::1-2")
V4_POOL = [a for a in POOL if a.version == 4]
PROPERTY = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,  # CI sees the same examples every run
    suppress_health_check=[HealthCheck.too_slow],
)


@st.composite
def clusters(
    draw: st.DrawFn,
    *,
    algorithm: Algorithm | None = None,
    one_group: bool = False,
    v4_only: bool = False,
    all_eligible: bool = False,
    defaults: bool = False,
) -> AllocationRequest:
    """Random small clusters: groups, node states, links down, stale claims, tunables."""
    pool = V4_POOL if v4_only else POOL
    addrs = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=12, unique=True))
    n = draw(st.integers(1, 6))
    states = [Eligibility.ELIGIBLE] * 3 + [Eligibility.DISABLED, Eligibility.INELIGIBLE]
    nodes = []
    for _ in range(n):
        mine = addrs if one_group else draw(st.lists(st.sampled_from(addrs), unique=True))
        ips = tuple(PublicIP(a, ("eth1",) if a.version == 4 else ("eth2",)) for a in mine)
        state = Eligibility.ELIGIBLE if all_eligible else draw(st.sampled_from(states))
        links: list[frozenset[str]] = [frozenset()] * 5 + [frozenset({"eth1"})]
        down = frozenset() if one_group or all_eligible else draw(st.sampled_from(links))
        nodes.append(NodeInfo(ips, state, down))
    current = {a: draw(st.none() | st.integers(0, n)) for a in addrs}  # n: no such node
    if defaults:
        tunables = Tunables(algorithm=algorithm or LCP2)
    else:
        tunables = Tunables(
            no_ip_failback=draw(st.booleans()),
            no_ip_takeover=draw(st.booleans()),
            no_ip_host_on_all_disabled=draw(st.booleans()),
            algorithm=algorithm if algorithm is not None else draw(st.sampled_from(Algorithm)),
        )
    if defaults:
        return AllocationRequest(tuple(nodes), current, tunables)
    return AllocationRequest(
        tuple(nodes),
        current,
        tunables,
        home_nodes=draw(st.dictionaries(st.sampled_from(addrs), st.integers(0, n), max_size=3)),
        force_rebalance=draw(st.frozensets(st.integers(0, n), max_size=2)),
    )


def may_host(request: AllocationRequest) -> dict[IPAddress, set[int]]:
    """Who may host each address, from the documented rules alone."""
    nodes = request.nodes
    allowed = {Eligibility.ELIGIBLE}
    if not request.tunables.no_ip_host_on_all_disabled and all(
        node.eligibility is not Eligibility.ELIGIBLE for node in nodes
    ):
        allowed.add(Eligibility.DISABLED)
    out: dict[IPAddress, set[int]] = {a: set() for node in nodes for a in node.addresses}
    for pnn, node in enumerate(nodes):
        if node.eligibility in allowed:
            for a in node.usable():
                out[a].add(pnn)
    return out


def moved(before: Allocation, after: Allocation) -> set[IPAddress]:
    return {a for a in after if after[a] != before.get(a)}


def with_state(request: AllocationRequest, pnn: int, state: Eligibility) -> AllocationRequest:
    nodes = list(request.nodes)
    nodes[pnn] = replace(nodes[pnn], eligibility=state)
    return replace(request, nodes=tuple(nodes))


@pytest.mark.parametrize("seed", range(4))
def test_larger_runs_same_as_reference(seed: int) -> None:
    """30-70 addresses: enough orphans for step 2 to compact its columns, groups included."""
    rnd = random.Random(seed)
    pool = expand(" ".join(f"10.{a}.{b}.1-11" for a in range(2) for b in range(3)))
    pool += expand(" ".join(f"fd00:0:0:{b}::1-b" for b in range(3)))
    for _ in range(5):
        n = rnd.randint(2, 7)
        addrs = rnd.sample(pool, rnd.randint(30, 70))
        states = [Eligibility.ELIGIBLE] * 4 + [Eligibility.DISABLED, Eligibility.INELIGIBLE]
        nodes = tuple(
            NodeInfo(
                tuple(PublicIP(a) for a in addrs if rnd.random() < 0.8),
                rnd.choice(states),
            )
            for _ in range(n)
        )
        current = rnd.choice([{}, {a: rnd.randrange(n) for a in addrs}, dict.fromkeys(addrs, 0)])
        request = AllocationRequest(
            nodes,
            current,
            Tunables(algorithm=rnd.choice([LCP2, LCP2, NONDET])),
            force_rebalance=frozenset(rnd.sample(range(n), rnd.randint(0, 1))),
        )
        assert allocate(request) == reference(request)


@PROPERTY
@given(clusters())
def test_same_as_reference(request: AllocationRequest) -> None:
    """The incremental code makes exactly the choices of the from-scratch transcription."""
    assert allocate(request) == reference(request)


@PROPERTY
@given(clusters())
def test_every_address_on_one_node_that_may_host_it(request: AllocationRequest) -> None:
    """Nothing lands on a node that may not host it; with takeover allowed, every address
    some node may host is hosted (once: the answer is a map)."""
    hosts = may_host(request)
    result = allocate(request)
    assert set(result) == set(hosts)
    for address, pnn in result.items():
        assert pnn is None or pnn in hosts[address]
        if not request.tunables.no_ip_takeover:
            assert (pnn is None) == (not hosts[address])


@PROPERTY
@given(clusters(algorithm=LCP2), st.sampled_from([LCP2, NONDET]))
def test_no_ip_takeover_only_keeps_or_drops(
    request: AllocationRequest, algorithm: Algorithm
) -> None:
    """NoIPTakeover: an address stays where it may stay, or goes unhosted; never moves.
    (Deterministic is the exception CTDB has: it still sends addresses to their home.)"""
    request = replace(
        request, tunables=replace(request.tunables, no_ip_takeover=True, algorithm=algorithm)
    )
    hosts = may_host(request)
    for address, pnn in allocate(request).items():
        now = request.current.get(address)
        assert pnn == (now if now in hosts[address] else None)


@PROPERTY
@given(clusters(one_group=True, all_eligible=True, defaults=True), st.data())
def test_leaving_node_moves_only_its_addresses(
    request: AllocationRequest, data: st.DataObject
) -> None:
    """A node leaves: its addresses move.  Deterministic and non-deterministic move nothing
    else (from their own stable layout).  LCP2 moves anything else only onto nodes that
    hosted nothing (CTDB's rebalance candidates), so with every remaining node already
    hosting, exactly the leaver's addresses move."""
    leaver = data.draw(st.integers(0, len(request.nodes) - 1))
    for algorithm in Algorithm:
        req = replace(request, tunables=Tunables(algorithm=algorithm))
        if algorithm is not LCP2:
            req = replace(req, current={})
        stable = allocate(req)
        after = allocate(replace(with_state(req, leaver, Eligibility.INELIGIBLE), current=stable))
        mine = {a for a, p in stable.items() if p == leaver}
        assert mine <= moved(stable, after)
        others = moved(stable, after) - mine
        if algorithm is LCP2:
            idle = set(range(len(req.nodes))) - set(stable.values())
            assert {after[a] for a in others} <= idle
            if not idle - {leaver}:
                assert not others
        else:
            assert not others


@PROPERTY
@given(clusters(one_group=True, all_eligible=True, defaults=True), st.data())
def test_joining_node_gets_a_bounded_share(request: AllocationRequest, data: st.DataObject) -> None:
    """A node joins: addresses only move onto nodes that hosted nothing before (LCP2 and
    non-deterministic; deterministic sends home exactly the joiner's own).  With IPv4 only,
    at most ceil(addresses / nodes) move -- the joiner's fair share."""
    joiner = data.draw(st.integers(0, len(request.nodes) - 1))
    v4_only = all(a.version == 4 for a in request.nodes[0].addresses)
    for algorithm in Algorithm:
        req = replace(request, tunables=Tunables(algorithm=algorithm))
        before = allocate(with_state(req, joiner, Eligibility.INELIGIBLE))
        after = allocate(replace(req, current=before))
        changes = moved(before, after)
        idle = set(range(len(req.nodes))) - {p for p in before.values() if p is not None}
        assert {after[a] for a in changes} <= idle
        if algorithm is DET or v4_only:
            assert len(changes) <= math.ceil(len(after) / len(req.nodes))


@PROPERTY
@given(clusters(one_group=True, defaults=True), st.sampled_from([DET, NONDET]))
def test_counts_even_in_one_group(request: AllocationRequest, algorithm: Algorithm) -> None:
    """Deterministic (no home_nodes) and non-deterministic leave eligible nodes of one group
    at most one address apart, whatever the node states and the current map."""
    request = replace(request, tunables=Tunables(algorithm=algorithm))
    hosting = sorted({p for hosts in may_host(request).values() for p in hosts})
    counts = Counter(allocate(request).values())
    if hosting:
        spread = [counts[p] for p in hosting]
        assert max(spread) - min(spread) <= 1


@PROPERTY
@given(clusters(one_group=True, v4_only=True, all_eligible=True, defaults=True))
def test_lcp2_counts_even_from_empty_ipv4(request: AllocationRequest) -> None:
    """Not a CTDB promise (LCP2 weighs subnets, not counts, and crafted IPv6 sets do end
    two apart), but for IPv4 from empty it holds in every case we have tried."""
    counts = Counter(allocate(replace(request, current={})).values())
    spread = [counts[p] for p in range(len(request.nodes))]
    assert max(spread) - min(spread) <= 1


@PROPERTY
@given(clusters(), st.randoms(use_true_random=False))
def test_answer_depends_only_on_the_request(request: AllocationRequest, rnd: object) -> None:
    """Same request, same answer -- whatever order the lists and maps come in."""
    assert isinstance(rnd, random.Random)
    shuffled_nodes = []
    for node in request.nodes:
        ips = list(node.public_ips)
        rnd.shuffle(ips)
        shuffled_nodes.append(replace(node, public_ips=tuple(ips)))
    current = list(request.current.items())
    rnd.shuffle(current)
    shuffled = replace(request, nodes=tuple(shuffled_nodes), current=dict(current))
    assert allocate(shuffled) == allocate(request) == allocate(request)
