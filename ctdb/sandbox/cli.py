"""``ctdb-sandbox``: a real cluster on this machine, and the faults to test it with."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable

from ctdb.sandbox.lab import BACKENDS, Options, Sandbox, destroy
from ctdb.sandbox.topology import SandboxError


def _pnn_list(text: str) -> list[int]:
    try:
        return [int(p) for p in text.split(",") if p != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of PNNs: {text!r}") from None


def _services(text: str) -> list[str]:
    from ctdb.sandbox.services import parse_services

    try:
        return parse_services(text)
    except SandboxError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--services: ")) from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ctdb-sandbox",
                                description="a pyctdb cluster on this machine")
    sub = p.add_subparsers(dest="command", required=True)

    def cmd(name: str, help_text: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help_text)
        c.add_argument("--name", default="sbx", help="sandbox name (default sbx)")
        return c

    up = cmd("up", "build a cluster and start it")
    up.add_argument("--nodes", type=int, default=3)
    up.add_argument("--backend", choices=BACKENDS, default="netns")
    up.add_argument("--public-ips", type=int, default=3)
    up.add_argument("--ipv6", action="store_true")
    up.add_argument("--services", type=_services, default=[],
                    help="file services the nodes serve a shared share with: smb,nfs"
                    " (nspawn backend)")
    up.add_argument("--lock", default="none", help="none, fcntl or etcd")
    up.add_argument("--impl", default="pyctdb", help="pyctdb, ctdb or keepalived")
    up.add_argument("--no-pyctdb-unit", dest="pyctdb_unit", action="store_false",
                    help="boot the nodes without this venv's ctdb.service and ctdbd, e.g. to"
                    " install pyctdb's package in them (nspawn backend)")
    cmd("down", "stop the cluster and remove every trace of it")
    cmd("status", "nodes, processes, addresses, state").add_argument("--json",
                                                                    action="store_true")
    probe = cmd("probe", "from the client, which node serves each public address: JSON "
                "lines on every change (starts an echo service naming its node in each)")
    probe.add_argument("--seconds", type=float, default=10.0)
    probe.add_argument("--interval-ms", type=float, default=10.0)
    probe.add_argument("--port", type=int, default=7777)
    for name, help_text in (("exec", "run a command in a node"),):
        c = cmd(name, help_text)
        c.add_argument("pnn", type=int)
        c.add_argument("argv", nargs=argparse.REMAINDER)
    c = cmd("client", "run a command in the client namespace")
    c.add_argument("argv", nargs=argparse.REMAINDER)
    c = cmd("kill", "SIGKILL a node's daemons, or one of them")
    c.add_argument("pnn", type=int)
    c.add_argument("daemon", nargs="?")
    for name, help_text in (("poweroff", "the node loses power"),
                            ("freeze", "SIGSTOP every process of the node"),
                            ("thaw", "SIGCONT every process of the node"),
                            ("restart", "stop and start the node's ctdbd")):
        cmd(name, help_text).add_argument("pnn", type=int)
    c = cmd("loss", "random packet loss on the node's links")
    c.add_argument("pnn", type=int)
    c.add_argument("percent", type=int)
    c = cmd("cut", "silently cut the node off a network")
    c.add_argument("pnn", type=int)
    c.add_argument("network", nargs="?", default="all", choices=("private", "public", "all"))
    c = cmd("heal", "undo cut, partition and loss")
    c.add_argument("pnn", nargs="?", default="all")
    for name in ("linkdown", "linkup"):
        c = cmd(name, f"{name[4:]} the carrier of a node's interface")
        c.add_argument("pnn", type=int)
        c.add_argument("iface")
    c = cmd("partition", "split the private network, e.g. partition 0,1 2")
    c.add_argument("groups", nargs="+", type=_pnn_list)
    cmd("add-node", "a new node joins the cluster")
    return p


def _probe(sb: Sandbox, args: argparse.Namespace) -> None:
    """Echo services in the nodes, then become the client probe (JSON lines on stdout)."""
    from ctdb.sandbox import probe

    probe.start_echo(sb, args.port)
    full = sb.client_argv([sys.executable, "-m", "ctdb.sandbox.probe", "client",
                           ",".join(sb.topo.public_ips + sb.topo.public_ips6), str(args.port),
                           str(args.seconds), str(args.interval_ms / 1000)])
    os.execvp(full[0], full)


def run(args: argparse.Namespace) -> int:  # noqa: PLR0912 - one branch per command
    say: Callable[[str], None] = lambda msg: print(f"ctdb-sandbox: {msg}", flush=True)  # noqa: E731
    if args.command == "up":
        sb = Sandbox(Options(name=args.name, nodes=args.nodes, backend=args.backend,
                             public_ips=args.public_ips, ipv6=args.ipv6, services=args.services,
                             lock=args.lock, impl=args.impl, pyctdb_unit=args.pyctdb_unit))
        try:
            sb.up(say)
        except BaseException:
            sb.down()
            raise
        say(f"sandbox {args.name} is up: try `ctdb-sandbox exec 0 ctdb status`, "
            f"and `ctdb-sandbox down --name {args.name}` when done")
        return 0
    if args.command == "down":
        try:
            Sandbox.load(args.name).down()
        except SandboxError:
            destroy(args.name)
        return 0
    sb = Sandbox.load(args.name)
    if args.command == "status":
        doc = sb.status()
        if args.json:
            print(json.dumps(doc, indent=2))
        else:
            print(f"sandbox {doc['name']} ({doc['backend']}, {doc['impl']}), client "
                  f"{doc['client']}, public IPs {' '.join(doc['public_ips']) or '-'}, "
                  f"services {','.join(doc['services']) or '-'}")
            for n in doc["nodes"]:
                print(f"  node {n['pnn']}: {n['state']:<14} pid {n['pid']}  private "
                      f"{n['private']}  public {n['public']}  netns {n['netns']}")
        return 0
    if args.command == "probe":
        _probe(sb, args)
    if args.command in ("exec", "client"):
        argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        if not argv:
            raise SandboxError("no command given")
        if args.command == "client":
            full = sb.client_argv(argv)
            os.execvp(full[0], full)
        node = sb.topo.node(args.pnn)
        full = sb.backend.exec_argv(sb, node, argv)
        os.execvpe(full[0], full, sb.backend.node_env(sb, node))
    if args.command == "kill":
        sb.kill(args.pnn, args.daemon)
    elif args.command == "heal":
        sb.heal(None if args.pnn == "all" else int(args.pnn))
    elif args.command in ("cut",):
        sb.cut(args.pnn, args.network)
    elif args.command == "loss":
        sb.loss(args.pnn, args.percent)
    elif args.command in ("linkdown", "linkup"):
        getattr(sb, args.command)(args.pnn, args.iface)
    elif args.command == "partition":
        sb.partition(args.groups)
    elif args.command == "add-node":
        say(f"node {sb.add_node()} joined")
    else:
        getattr(sb, args.command)(args.pnn)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except SandboxError as exc:
        print(f"ctdb-sandbox: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
