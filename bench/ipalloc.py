"""Time public IP allocation: ``.venv/bin/python -m bench.ipalloc [--repeat N]``.

Prints the best wall-clock and the best CPU time of each algorithm for 8 nodes x 64
addresses and 64 nodes x 1,024 addresses from empty, and for 64 x 1,024 after one node
leaves and after it comes back; for LCP2 also a cold start (node 0 holds all 1,024, the
other 63 join at once; timed once).  The address sets are IPv4 (16 subnets) and mixed
IPv4/IPv6 (half and half, 16 subnets each).
"""

from __future__ import annotations

import argparse
import ipaddress
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial

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
)


def addresses(count: int, *, mixed: bool) -> list[IPAddress]:
    """*count* addresses in 16 subnets; with *mixed*, every other one is IPv6."""
    per = max(1, count // 16)
    out: list[IPAddress] = []
    for i in range(count):
        subnet, host = divmod(i, per)
        if mixed and i % 2:
            out.append(ipaddress.IPv6Address(f"fd00:0:0:{subnet:x}::{host + 1:x}"))
        else:
            out.append(ipaddress.IPv4Address(f"10.{subnet}.0.{host + 1}"))
    return out


def request(num_nodes: int, addrs: list[IPAddress], algorithm: Algorithm) -> AllocationRequest:
    ips = tuple(PublicIP(a, ("eth1",)) for a in addrs)
    return AllocationRequest(
        nodes=tuple(NodeInfo(ips) for _ in range(num_nodes)),
        tunables=Tunables(algorithm=algorithm),
    )


def timed(fn: Callable[[], Allocation], repeat: int) -> tuple[float, float, Allocation]:
    """Best wall time and best CPU time of *repeat* runs (CPU time shrugs off a busy host)."""
    wall: list[float] = []
    cpu: list[float] = []
    result: Allocation = {}
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = fn()
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start)
    return min(wall), min(cpu), result


def moves(before: Mapping[IPAddress, int | None], after: Allocation) -> int:
    return sum(1 for a, p in after.items() if before.get(a) != p)


def scenario(label: str, num_nodes: int, count: int, *, mixed: bool, repeat: int) -> None:
    addrs = addresses(count, mixed=mixed)
    for algorithm in Algorithm:
        base = request(num_nodes, addrs, algorithm)
        wall, cpu, filled = timed(partial(allocate, base), repeat)
        print(f"{label:<22} {algorithm.name:<16} from empty      {wall:8.3f} s  {cpu:8.3f} s")
        if num_nodes < 64:
            continue
        # Node 5 leaves (e.g. banned): its addresses must go elsewhere.
        gone = list(base.nodes)
        gone[5] = replace(gone[5], eligibility=Eligibility.INELIGIBLE)
        leave = replace(base, nodes=tuple(gone), current=filled)
        wall, cpu, left = timed(partial(allocate, leave), repeat)
        print(
            f"{label:<22} {algorithm.name:<16} one node leaves {wall:8.3f} s  {cpu:8.3f} s"
            f"  ({moves(filled, left)} moves)"
        )
        back = replace(base, current=left)
        wall, cpu, joined = timed(partial(allocate, back), repeat)
        print(
            f"{label:<22} {algorithm.name:<16} it rejoins      {wall:8.3f} s  {cpu:8.3f} s"
            f"  ({moves(left, joined)} moves)"
        )
        if algorithm is Algorithm.LCP2:
            # Cold start: node 0 came up first and took everything, then the rest join.
            cold = replace(base, current=dict.fromkeys(addrs, 0))
            wall, cpu, spread = timed(partial(allocate, cold), 1)
            print(
                f"{label:<22} {algorithm.name:<16} 63 nodes join   {wall:8.3f} s  {cpu:8.3f} s"
                f"  ({moves(cold.current, spread)} moves)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement")
    args = parser.parse_args()
    print(f"{'scenario':<22} {'algorithm':<16} {'step':<15} {'wall':>10}  {'CPU':>10}")
    for mixed in (False, True):
        family = "v4+v6" if mixed else "IPv4"
        scenario(f"8x64 {family}", 8, 64, mixed=mixed, repeat=args.repeat)
        scenario(f"64x1024 {family}", 64, 1024, mixed=mixed, repeat=args.repeat)


if __name__ == "__main__":
    main()
