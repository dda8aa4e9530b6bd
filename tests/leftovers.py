"""What a sandbox left behind on this machine: its namespaces, mounts, processes,
directory and cgroups.  Every sandbox test ends by asserting there is nothing."""

from __future__ import annotations

import os
from pathlib import Path

from ctdb.sandbox import network, nspawn_backend
from ctdb.sandbox.topology import STATE_ROOT


def leftovers(name: str) -> list[str]:
    root = STATE_ROOT / name
    found = [ns for ns in network.namespaces() if ns.startswith(f"pctdb-{name}-")]
    with open("/proc/self/mountinfo") as f:
        found += [f"mount {line.split()[4]}" for line in f
                  if line.split()[4].startswith(f"{root}/")]
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if f"{root}/" in cmdline:
            found.append(f"pid {pid}: {cmdline.replace(chr(0), ' ')[:80]}")
    if root.exists():
        found.append(str(root))
    found += [str(cg) for cg in (r / nspawn_backend.CGROUP_DIR / name
                                 for r in nspawn_backend._cgroup_roots()) if cg.exists()]
    return found
