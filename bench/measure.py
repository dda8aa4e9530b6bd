"""The measurements ``python -m bench`` takes, for our node and Samba's side by side.

Probes (``bench.probe``) run as separate processes, inside a lab namespace where the
socket is a TCP one; this module starts them, collects their JSON, and reads memory
and command timings straight from /proc and the clock.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


class BenchError(RuntimeError):
    """A measurement could not be taken."""


def probe(args: Sequence[str], ns: str | None = None, timeout: float = 120) -> dict[str, Any]:
    """Run ``python -m bench.probe ARGS`` (in namespace *ns*) and return its JSON."""
    argv = [PYTHON, "-m", "bench.probe", *args]
    if ns is not None:
        argv = ["ip", "netns", "exec", ns, *argv]
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)
    res = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                         env=env, check=False)
    if res.returncode != 0 or not res.stdout.strip():
        raise BenchError(f"probe {' '.join(args)} failed ({res.returncode}): "
                         f"{res.stderr.strip()[-600:]}")
    result: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return result


@contextlib.contextmanager
def server(argv: Sequence[str], ns: str | None = None, wait_line: bool = True,
           log: Path | None = None) -> Iterator[subprocess.Popen[str]]:
    """A background server process, killed (and reaped) on exit."""
    full = list(argv)
    if ns is not None:
        full = ["ip", "netns", "exec", ns, *full]
    err = open(log, "a") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(full, cwd=REPO, stdout=subprocess.PIPE, stderr=err,
                            stdin=subprocess.DEVNULL, text=True)
    try:
        if wait_line:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != "ready":
                raise BenchError(f"{' '.join(argv)} did not start")
        yield proc
    finally:
        proc.kill()
        proc.wait()
        if log:
            err.close()  # type: ignore[union-attr]


def have_socat() -> bool:
    return shutil.which("socat") is not None


# -- memory --------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """*pid* and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: split after the last ')'.
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def rollup(pid: int) -> dict[str, int]:
    """RSS, PSS and USS of one process in kB, from smaps_rollup."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
            fields[parts[0][:-1]] = int(parts[1])
    return {
        "rss": fields.get("Rss", 0),
        "pss": fields.get("Pss", 0),
        "uss": fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
        + fields.get("Private_Hugetlb", 0),
    }


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def node_memory(pid: int) -> dict[str, Any]:
    """A node's memory: its top process and every descendant, summed (kB)."""
    total = {"rss": 0, "pss": 0, "uss": 0}
    procs = []
    for p in descendants(pid):
        try:
            m = rollup(p)
        except OSError:
            continue  # exited meanwhile (an event script)
        for k in total:
            total[k] += m[k]
        procs.append({"pid": p, "name": comm(p), **m})
    return {**total, "processes": procs}


# -- whole commands -------------------------------------------------------------------


def time_commands(commands: dict[str, tuple[list[str], dict[str, str] | None]],
                  runs: int, warmup: int = 3) -> dict[str, dict[str, Any]]:
    """Wall time of each command, *runs* times, interleaved so they share the noise.

    Returns per command: median and p90 in ms, and every stdout (for reported times).
    """
    results: dict[str, dict[str, Any]] = {
        name: {"ms": [], "stdout": [], "failures": 0} for name in commands}
    for i in range(warmup + runs):
        for name, (argv, env) in commands.items():
            t0 = time.perf_counter()
            res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60,
                                 check=False)
            elapsed = (time.perf_counter() - t0) * 1000
            if i < warmup:
                continue
            if res.returncode != 0:
                results[name]["failures"] += 1
                results[name]["error"] = res.stderr.strip()[-300:]
                continue
            results[name]["ms"].append(elapsed)
            results[name]["stdout"].append(res.stdout)
    for r in results.values():
        ms = sorted(r["ms"])
        r["median_ms"] = statistics.median(ms) if ms else float("nan")
        r["p90_ms"] = ms[min(len(ms) - 1, int(0.9 * len(ms)))] if ms else float("nan")
        r["min_ms"] = ms[0] if ms else float("nan")
    return results


_REPORTED = re.compile(r"time=([0-9.]+) sec")


def reported_times_us(outputs: list[str]) -> list[float]:
    """The ``time=... sec`` a ``ctdb ping`` printed, in microseconds."""
    out = []
    for text in outputs:
        m = _REPORTED.search(text)
        if m:
            out.append(float(m.group(1)) * 1e6)
    return out


def importtime(argv_tail: Sequence[str], env: dict[str, str],
               top: int = 12) -> dict[str, Any]:
    """``python -X importtime -m ctdb.cli.main ARGS``: total and the slowest modules."""
    res = subprocess.run([PYTHON, "-X", "importtime", "-m", "ctdb.cli.main", *argv_tail],
                         env=env, capture_output=True, text=True, timeout=60, check=False)
    rows = []
    for line in res.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m:
            rows.append((int(m.group(1)), int(m.group(2)), len(m.group(3)) // 2,
                         m.group(4)))
    total_self = sum(r[0] for r in rows)
    by_self = sorted(rows, reverse=True)[:top]
    top_level = sorted((r for r in rows if r[2] == 0), key=lambda r: -r[1])[:top]
    return {
        "total_self_us": total_self,
        "by_self": [{"module": r[3], "self_us": r[0], "cumulative_us": r[1]}
                    for r in by_self],
        "top_level": [{"module": r[3], "self_us": r[0], "cumulative_us": r[1]}
                      for r in top_level],
    }


def codec_rates() -> list[dict[str, Any]]:
    """Run bench/protocol_codec.py and parse its table."""
    res = subprocess.run([PYTHON, "-m", "bench.protocol_codec"], cwd=REPO,
                         capture_output=True, text=True, timeout=300, check=False)
    if res.returncode != 0:
        raise BenchError(f"protocol_codec failed: {res.stderr.strip()[-400:]}")
    rows = []
    for line in res.stdout.splitlines():
        m = re.match(r"(.+?)\s+(\d+)\s+([\d,]+)\s+([\d,]+)\s*$", line)
        if m:
            rows.append({"message": m.group(1).strip(), "bytes": int(m.group(2)),
                         "encode_per_s": int(m.group(3).replace(",", "")),
                         "decode_per_s": int(m.group(4).replace(",", ""))})
    return rows


# -- machine ---------------------------------------------------------------------------


def cpu_snapshot() -> tuple[float, float, float]:
    """(machine busy CPU seconds, machine total CPU seconds, CPU seconds of this process
    and every child it has reaped), to tell afterwards how busy others kept the machine."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])
    t = os.times()
    own = t.user + t.system + t.children_user + t.children_system
    return (total - idle) / tick, total / tick, own


def others_share(before: tuple[float, float, float], after: tuple[float, float, float]) -> str:
    """The share of the machine's CPU that processes outside the bench used meanwhile."""
    busy = after[0] - before[0]
    total = after[1] - before[1]
    own = after[2] - before[2]
    if total <= 0:
        return "?"
    return f"{max(0.0, busy - own) / total * 100:.0f}% of all CPUs"



def machine() -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    debian = "?"
    with contextlib.suppress(OSError):
        debian = Path("/etc/debian_version").read_text().strip()
    ctdb_pkg = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "ctdb"],
                              capture_output=True, text=True, check=False).stdout.strip()
    load = "?"
    with contextlib.suppress(OSError):
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": mem,
        "kernel": os.uname().release,
        "debian": debian,
        "python": sys.version.split()[0],
        "samba_ctdb": ctdb_pkg or "not installed",
        "loadavg_at_start": load,
    }


def finish_context(info: dict[str, str], started: float, cpu_before: Any) -> None:
    """The run's closing context, as every bench prints it: load, duration, foreign CPU."""
    info["loadavg_at_end"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    info["duration"] = f"{time.monotonic() - started:.0f} s"
    info["CPU used by other processes meanwhile"] = others_share(cpu_before, cpu_snapshot())
