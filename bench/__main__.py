"""``make bench``: the node runtime measured beside Samba's CTDB, in one run.

Brings up a 3-node pyctdb cluster and a 3-node Samba CTDB 4.17 cluster, each in
network namespaces of its own, measures control round trips, pipelined message
rates, whole-node memory and the ``ctdb ping`` command's wall time for both, with
raw echo servers as the floor, then prints a table and updates docs/benchmarks.md.
Every namespace, process and mount it starts is removed again, also on failure.

    .venv/bin/python -m bench [--quick] [--no-doc] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from bench import measure
from bench.measure import PYTHON, REPO, BenchError, probe, server
from bench.report import Row, check, md_list_table, md_run, md_table, text_table, update_doc
from ctdb.sandbox.lab import Options, Sandbox
from ctdb.sandbox.samba_ctdb import SambaCluster, SambaCtdbMissing

DOC = REPO / "docs" / "benchmarks.md"
TCP_PORT_PY, TCP_PORT_SOCAT = 7101, 7102


def log(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def clusters(root: Path) -> Iterator[tuple[Sandbox, SambaCluster]]:
    ours = Sandbox(Options(name=f"bo{os.getpid() % 100000}", nodes=3))
    peer = SambaCluster(root / "samba", 3, tag="bs")
    try:
        log("starting Samba CTDB's 3-node cluster (it takes ~25 s to reach all OK)")
        t0 = time.monotonic()
        peer.up()
        log(f"Samba CTDB all OK after {time.monotonic() - t0:.1f} s")
        t0 = time.monotonic()
        ours.up()
        log(f"pyctdb cluster answering after {time.monotonic() - t0:.1f} s")
        yield ours, peer
    finally:
        log("stopping both clusters")
        try:
            ours.down()
        finally:
            peer.down()


# -- round trips and rates ---------------------------------------------------------


def rounds(n: int, fns: dict[str, Callable[[], dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Run every measurement *n* times, alternating the order each round."""
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in fns}
    names = list(fns)
    for i in range(n):
        for name in names if i % 2 == 0 else reversed(names):
            try:
                out[name].append(fns[name]())
            except BenchError as exc:
                log(f"{name}: {exc}")
    return out


def median_of(results: list[dict[str, Any]], key: str) -> float:
    vals = [r[key] for r in results if key in r]
    return statistics.median(vals) if vals else math.nan


def best_of(results: list[dict[str, Any]], key: str) -> float:
    vals = [r[key] for r in results if key in r]
    return max(vals) if vals else math.nan


def transport_measurements(ours: Sandbox, peer: SambaCluster, work: Path,
                           opts: argparse.Namespace) -> dict[str, Any]:
    run0 = str(ours.topo.node(0).run_dir)
    sock0 = str(peer.socket_path(0))
    n0, n1 = ours.topo.node(0).netns, ours.topo.node(1).netns
    n1_addr = ours.topo.node(1).private_ip
    lat = ["--count", str(opts.count), "--warmup", str(opts.count // 10)]
    rate = ["--window", str(opts.window), "--seconds", str(opts.seconds)]
    unix_py, unix_socat = str(work / "echo-py.sock"), str(work / "echo-socat.sock")
    tcp_py, tcp_socat = f"{n1_addr}:{TCP_PORT_PY}", f"{n1_addr}:{TCP_PORT_SOCAT}"
    socat = measure.have_socat()
    if not socat:
        log("socat is not installed: the C echo baseline is skipped")

    with contextlib.ExitStack() as stack:
        stack.enter_context(server([PYTHON, "-m", "bench.probe", "echo-server",
                                    "--unix", unix_py]))
        stack.enter_context(server([PYTHON, "-m", "bench.probe", "echo-server",
                                    "--tcp", tcp_py], ns=n1))
        if socat:
            # socat relays through a pipe (PIPE): fine for one message at a time, but
            # it merges seqpacket messages under load, so it is a latency floor only.
            stack.enter_context(server(["socat", f"UNIX-LISTEN:{unix_socat},type=5,fork",
                                        "PIPE"], wait_line=False))
            stack.enter_context(server(["socat", f"TCP-LISTEN:{TCP_PORT_SOCAT},"
                                        f"bind={n1_addr},reuseaddr,fork,nodelay", "PIPE"],
                                       ns=n1, wait_line=False))
        latency: dict[str, Callable[[], dict[str, Any]]] = {
            "ours_local": lambda: probe(["ours", "--run-dir", run0, *lat]),
            "ctdb_local": lambda: probe(["ctdb", "--socket", sock0, *lat]),
            "ours_cross": lambda: probe(["ours", "--run-dir", run0, "--pnn", "1", *lat]),
            "ctdb_cross": lambda: probe(["ctdb", "--socket", sock0, "--pnn", "1", *lat]),
            "ours_async_local": lambda: probe(["ours-async", "--run-dir", run0, *lat]),
            "ours_async_cross": lambda: probe(["ours-async", "--run-dir", run0, "--pnn", "1",
                                               *lat]),
            "echo_unix_py": lambda: probe(["echo", "--unix", unix_py, *lat]),
            "echo_tcp_py": lambda: probe(["echo", "--tcp", tcp_py, *lat], ns=n0),
        }
        if socat:
            latency["echo_unix_socat"] = lambda: probe(["echo", "--unix", unix_socat, *lat])
            latency["echo_tcp_socat"] = lambda: probe(["echo", "--tcp", tcp_socat, *lat],
                                                      ns=n0)
        log(f"round trips: {len(latency)} kinds x {opts.rounds} rounds x {opts.count}")
        lat_results = rounds(opts.rounds, latency)

        rates: dict[str, Callable[[], dict[str, Any]]] = {
            "ours_local": lambda: probe(["ours", "--run-dir", run0, *rate]),
            "ctdb_local": lambda: probe(["ctdb", "--socket", sock0, *rate]),
            "ours_cross": lambda: probe(["ours", "--run-dir", run0, "--pnn", "1", *rate]),
            "ctdb_cross": lambda: probe(["ctdb", "--socket", sock0, "--pnn", "1", *rate]),
            "ours_async_local": lambda: probe(["ours-async", "--run-dir", run0, *rate]),
            "ours_async_cross": lambda: probe(["ours-async", "--run-dir", run0, "--pnn", "1",
                                               *rate]),
            "ctdb_1by1_local": lambda: probe(["ctdb", "--socket", sock0, "--one-by-one",
                                              *rate]),
            "ctdb_1by1_cross": lambda: probe(["ctdb", "--socket", sock0, "--one-by-one",
                                              "--pnn", "1", *rate]),
            "echo_unix_py": lambda: probe(["echo", "--unix", unix_py, *rate]),
            "echo_tcp_py": lambda: probe(["echo", "--tcp", tcp_py, *rate], ns=n0),
        }
        log(f"pipelined rates: {len(rates)} kinds x {opts.rounds} rounds x {opts.seconds} s")
        rate_results = rounds(opts.rounds, rates)
    return {"latency": lat_results, "rate": rate_results, "socat": socat}


# -- memory and commands -----------------------------------------------------------------


def memory(ours: Sandbox, peer: SambaCluster) -> dict[str, Any]:
    return {
        "ours": [measure.node_memory(ours.pid(n.pnn) or 0) for n in ours.topo.nodes],
        "peer": [measure.node_memory(peer.pid(i)) for i in range(peer.count)],
    }


def commands(ours: Sandbox, peer: SambaCluster, runs: int,
             no_bytecode_env: dict[str, str]) -> dict[str, Any]:
    our_env = ours.backend.node_env(ours, ours.topo.node(0))
    src_env = dict(no_bytecode_env, CTDB_BASE=our_env["CTDB_BASE"])
    our_ctdb = str(Path(PYTHON).parent / "ctdb")
    nsenter_ours = ["nsenter", "-t", str(ours.pid(0)), "-m", "-n"]
    cmds: dict[str, tuple[list[str], dict[str, str] | None]] = {
        "ours": ([our_ctdb, "ping"], our_env),
        "ours_nsenter": ([*nsenter_ours, our_ctdb, "ping"], our_env),
        "ours_no_bytecode": ([our_ctdb, "ping"], src_env),
        "peer_nsenter": ([*peer.nsenter(0), "/usr/bin/ctdb", "ping"], None),
        "nsenter_true": ([*peer.nsenter(0), "/bin/true"], None),
        "python_floor": (["/usr/bin/python3", "-I", "-c", "pass"], None),
        "venv_python_floor": ([PYTHON, "-c", "pass"], None),
    }
    log(f"command wall time: {len(cmds)} commands x {runs} runs")
    local = measure.time_commands(cmds, runs)
    cross = measure.time_commands({
        "ours": ([our_ctdb, "ping", "-n", "1"], our_env),
        "peer_nsenter": ([*peer.nsenter(0), "/usr/bin/ctdb", "ping", "-n", "1"], None),
    }, max(10, runs // 2), warmup=1)
    imports = {
        "version": measure.importtime(["version"], our_env),
        "ping": measure.importtime(["ping"], our_env),
    }
    return {"local": local, "cross": cross, "importtime": imports}


# -- the report ----------------------------------------------------------------------------


def _lat(lat: dict[str, list[dict[str, Any]]], kind: str) -> tuple[float, float]:
    return median_of(lat.get(kind, []), "p50_us"), median_of(lat.get(kind, []), "p99_us")


def latency_rows(t: dict[str, Any], cmd: dict[str, Any]) -> list[Row]:
    lat = t["latency"]
    rows: list[Row] = []
    sec = "1. Control round trip (ping), one outstanding; lower is better"
    for kind, where, floor in (("local", "local", "unix seqpacket echo"),
                               ("cross", "cross-node", "TCP echo n0->n1")):
        echo = "unix" if kind == "local" else "tcp"
        echo_py, echo_c = _lat(lat, f"echo_{echo}_py"), _lat(lat, f"echo_{echo}_socat")
        o, p = _lat(lat, f"ours_{kind}"), _lat(lat, f"ctdb_{kind}")
        for idx, pct in ((0, "p50"), (1, "p99")):
            base = f"{floor}: py {echo_py[idx]:.0f} µs"
            if t["socat"]:
                base += f", socat {echo_c[idx]:.0f} µs"
            base += f"; ours = {o[idx] / echo_py[idx]:.1f}x py echo"
            goal = status = ""
            if kind == "cross":
                goal = f"<= 3x py TCP echo ({3 * echo_py[idx]:.0f} µs)"
                status = check(o[idx], 3 * echo_py[idx], at_most=True)
            rows.append(Row(sec, f"ping {where} {pct}", "us", o[idx], p[idx], baseline=base,
                            goal=goal, status=status))
    for kind, label in (("local", "local"), ("cross", "cross-node")):
        a = _lat(lat, f"ours_async_{kind}")
        rows.append(Row(sec, f"ping {label} p50, asyncio Client", "us", a[0],
                        baseline=f"p99 {a[1]:.0f} µs (the client the daemons use)"))
    for kind, label in (("local", "local"), ("cross", "-n 1")):
        ours_rep = measure.reported_times_us(cmd[kind]["ours"]["stdout"])
        peer_rep = measure.reported_times_us(cmd[kind]["peer_nsenter"]["stdout"])
        rows.append(Row(sec, f"`ctdb ping` {label}: the time it prints (median)", "us",
                        statistics.median(ours_rep) if ours_rep else math.nan,
                        statistics.median(peer_rep) if peer_rep else math.nan,
                        baseline="one ping in a fresh CLI process"))
    return rows


def rate_rows(t: dict[str, Any], opts: argparse.Namespace) -> list[Row]:
    rate = t["rate"]
    rows: list[Row] = []
    sec = (f"2. Pipelined ping rate, window {opts.window}, best of {opts.rounds} x "
           f"{opts.seconds:g} s; higher is better")

    def best(kind: str) -> float:
        return best_of(rate.get(kind, []), "per_s")

    for kind, label, goal_v in (("local", "local", 50_000), ("cross", "cross-node", 20_000)):
        if kind == "local":
            base = f"py seqpacket echo {best('echo_unix_py'):,.0f}/s"
        else:
            base = f"py TCP echo {best('echo_tcp_py'):,.0f}/s (a byte stream: replies coalesce)"
        rows.append(Row(sec, f"rate {label}", "/s", best(f"ours_{kind}"), best(f"ctdb_{kind}"),
                        lower_is_better=False, baseline=base, goal=f">= {goal_v:,}/s",
                        status=check(best(f"ours_{kind}"), goal_v, at_most=False)))
    for kind, label in (("local", "local"), ("cross", "cross-node")):
        rows.append(Row(sec, f"rate {label}, Samba client sends/reads one at a time", "/s",
                        best(f"ours_{kind}"), best(f"ctdb_1by1_{kind}"), lower_is_better=False,
                        baseline="one request per send, one reply per recv, as ours"))
    for kind, label in (("local", "local"), ("cross", "cross-node")):
        rows.append(Row(sec, f"rate {label}, asyncio Client ({opts.window} tasks)", "/s",
                        best(f"ours_async_{kind}"), lower_is_better=False))
    return rows


def memory_rows(mem: dict[str, Any]) -> list[Row]:
    sec = "3. Memory of node 0 (top process + all descendants), smaps_rollup; lower is better"
    o0, p0 = mem["ours"][0], mem["peer"][0]
    rows = []
    for key in ("rss", "pss", "uss"):
        goal = status = ""
        if key == "pss":
            goal, status = "<= 120 MB", check(o0[key] / 1024, 120, at_most=True)
        base = f"{len(o0['processes'])} vs {len(p0['processes'])} processes" if key == "rss" \
            else ""
        rows.append(Row(sec, f"node {key.upper()}", "MB", o0[key] / 1024, p0[key] / 1024,
                        baseline=base, goal=goal, status=status))
    return rows


def command_rows(cmd: dict[str, Any], opts: argparse.Namespace) -> list[Row]:
    sec = f"4. `ctdb ping` whole command, median of {opts.cli_runs} runs; lower is better"
    loc = cmd["local"]

    def med(name: str) -> float:
        return float(loc[name]["median_ms"])

    return [
        Row(sec, "ctdb ping (ours direct; Samba via nsenter)", "ms", med("ours"),
            med("peer_nsenter"), baseline=f"nsenter alone {med('nsenter_true'):.1f} ms",
            goal="<= 40 ms", status=check(med("ours"), 40, at_most=True)),
        Row(sec, "ctdb ping, pyctdb not byte-compiled", "ms", med("ours_no_bytecode"),
            med("peer_nsenter"),
            baseline="PYTHONDONTWRITEBYTECODE=1 and no .pyc: every run compiles"),
        Row(sec, "ctdb ping, both via nsenter", "ms", med("ours_nsenter"), med("peer_nsenter"),
            baseline=f"p90 ours {loc['ours_nsenter']['p90_ms']:.1f}, "
                     f"Samba {loc['peer_nsenter']['p90_ms']:.1f} ms"),
        Row(sec, "interpreter floor: python3 -I -c pass", "ms", med("python_floor"),
            baseline=f"venv python -c pass {med('venv_python_floor'):.1f} ms"),
    ]


def build_rows(t: dict[str, Any], mem: dict[str, Any], cmd: dict[str, Any],
               opts: argparse.Namespace) -> list[Row]:
    return [*latency_rows(t, cmd), *rate_rows(t, opts), *memory_rows(mem),
            *command_rows(cmd, opts)]


def extra_sections(t: dict[str, Any], mem: dict[str, Any], cmd: dict[str, Any],
                   codec: list[dict[str, Any]], opts: argparse.Namespace) -> list[str]:
    out = []
    procs = []
    for impl, label in (("ours", "pyctdb"), ("peer", "Samba")):
        for n, node in enumerate(mem[impl]):
            names = ", ".join(f"{p['name']} {p['pss'] / 1024:.1f}" for p in node["processes"])
            procs.append([label, str(n), f"{node['rss'] / 1024:.1f}", f"{node['pss'] / 1024:.1f}",
                          f"{node['uss'] / 1024:.1f}", names])
    out.append("Memory per node (MB) and PSS per process:\n\n" + md_table(
        ["impl", "node", "RSS", "PSS", "USS", "processes (PSS MB)"], procs))
    spread = []
    for section in ("latency", "rate"):
        key = "p50_us" if section == "latency" else "per_s"
        for kind, results in t[section].items():
            vals = [r[key] for r in results if key in r]
            if vals:
                spread.append([section, kind, ", ".join(f"{v:,.0f}" for v in vals)])
    out.append("Every round (latency: p50 µs; rate: per second), to show the noise:\n\n"
               + md_table(["what", "kind", "rounds"], spread))
    if codec:
        out.append("Protocol codec rates (`bench/protocol_codec.py`, header included):\n\n"
                   + md_list_table(["message", "bytes", "encode/s", "decode/s"],
                                   [{**c, "encode_per_s": f"{c['encode_per_s']:,}",
                                     "decode_per_s": f"{c['decode_per_s']:,}"} for c in codec],
                                   ["message", "bytes", "encode_per_s", "decode_per_s"]))
    for what, imp in cmd["importtime"].items():
        items = [{**r, "self_ms": f"{r['self_us'] / 1000:.1f}",
                  "cum_ms": f"{r['cumulative_us'] / 1000:.1f}"} for r in imp["by_self"][:10]]
        tops = [{**r, "self_ms": f"{r['self_us'] / 1000:.1f}",
                 "cum_ms": f"{r['cumulative_us'] / 1000:.1f}"} for r in imp["top_level"][:10]]
        out.append(f"`python3 -X importtime -m ctdb.cli.main {what}` (byte-compiled): imports "
                   f"take {imp['total_self_us'] / 1000:.1f} ms in all (importtime's own "
                   "overhead included). Slowest modules by self time, then the top-level "
                   "imports by cumulative time (what each pulls in):\n\n"
                   + md_list_table(["module", "self ms", "cumulative ms"], items,
                                   ["module", "self_ms", "cum_ms"]) + "\n\n"
                   + md_list_table(["top-level import", "self ms", "cumulative ms"], tops,
                                   ["module", "self_ms", "cum_ms"]))
    return out


SKELETON = """# Benchmarks

Generated by `make bench` (`bench/__main__.py`); see the method in `bench/`.
"""


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench",
                                description="pyctdb beside Samba's CTDB, in one run")
    p.add_argument("--quick", action="store_true", help="short run for trying the bench")
    p.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    p.add_argument("--json", type=Path, help="also write the raw results here")
    opts = p.parse_args(argv)
    opts.rounds = 1 if opts.quick else 3
    opts.count = 1000 if opts.quick else 5000
    opts.window = 128
    opts.seconds = 1.0 if opts.quick else 3.0
    opts.cli_runs = 10 if opts.quick else 30
    return opts


def run_all(opts: argparse.Namespace, work: Path) -> tuple[dict[str, Any], ...]:
    """Both clusters up, every measurement, both clusters down."""
    # Run everything byte-compiled, as an installed .deb does (dh_python3 compiles at
    # install).  A session may set PYTHONDONTWRITEBYTECODE=1, which would make every
    # process compile pyctdb from source on each start; the cache goes to a temporary
    # prefix so nothing is written into the source tree.
    no_bytecode_env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    no_bytecode_env.pop("PYTHONPYCACHEPREFIX", None)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    with clusters(work) as (ours, peer):
        t = transport_measurements(ours, peer, work, opts)
        mem = memory(ours, peer)
        cmd = commands(ours, peer, opts.cli_runs, no_bytecode_env)
    return t, mem, cmd


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    if os.geteuid() != 0:
        print("bench: needs root (network and mount namespaces)", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    started = time.monotonic()
    info = measure.machine()
    info["date"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    info["command"] = "`make bench`" + (" (--quick)" if opts.quick else "")
    cpu_before = measure.cpu_snapshot()
    log("protocol codec rates")
    codec = measure.codec_rates()
    work = Path(tempfile.mkdtemp(prefix=f"pctdbb-{os.getpid()}-"))
    ok = False
    try:
        t, mem, cmd = run_all(opts, work)
        ok = True
    except SambaCtdbMissing as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    finally:
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"failed; logs kept in {work}")
    measure.finish_context(info, started, cpu_before)
    rows = build_rows(t, mem, cmd, opts)
    print(text_table(rows))
    print()
    for c in codec:
        print(f"codec {c['message']:<24}{c['bytes']:>9} B {c['encode_per_s']:>12,} enc/s "
              f"{c['decode_per_s']:>12,} dec/s")
    print("machine: " + "; ".join(f"{k} {v}" for k, v in info.items()))
    if opts.json:
        opts.json.write_text(json.dumps({"info": info, "transport": t, "memory": mem,
                                         "commands": cmd, "codec": codec}, indent=1,
                                        default=str))
    if not opts.no_doc:
        run_md = md_run("Latest run", info, rows, extra_sections(t, mem, cmd, codec, opts))
        update_doc(DOC, SKELETON, run_md)
        log(f"updated {DOC.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
