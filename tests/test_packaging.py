"""pyctdb's .deb and .rpm: built once (packaging/build.sh), inspected, and the .deb
installed in a clean systemd container where its own ctdb.service runs a 1-node cluster.

The container is a clone of this machine (``Options(pyctdb_unit=False)``: no venv, no
drop-in, no ctdbd), so the package's dependencies are this machine's Debian packages
(make install provides them, python3-dbus-next included) and Samba's ctdb, when
installed here, is what the package replaces.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ctdb.sandbox.lab import Options, Sandbox, wait_for
from tests.leftovers import leftovers

# make test installs the packaging tools and runs as root: a missing part fails, no skip.
pytestmark = [pytest.mark.netns]

ROOT = Path(__file__).resolve().parents[1]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
BUILD_TIMEOUT = 300.0
SITE = "/usr/lib/python3/dist-packages"
COMMANDS = ("/usr/bin/ctdb", "/usr/bin/ctdb-config", "/usr/bin/netfs-render",
            "/usr/bin/pyctdb-nfs-callout", "/usr/sbin/ctdbd")
NFS_SCRIPT = "/usr/share/pyctdb/events/legacy/60.nfs.script"
CONFFILES = ("/etc/ctdb/ctdb.conf", "/etc/ctdb/script.options", "/etc/logrotate.d/ctdb")
# Never in a package: the lab, the tests, the benchmarks, build leftovers.
UNWANTED = re.compile(r"/(tests|bench|ansible|examples|sandbox)(/|$)|ctdb-sandbox|"
                      r"/ctdb/demo\.py|\.egg-info|/debian/")


@dataclass
class Packages:
    deb: Path
    rpm: Path
    lintian: str
    seconds: float


def run(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Packages:
    out = tmp_path_factory.mktemp("packages")
    start = time.monotonic()
    build = subprocess.run([str(ROOT / "packaging" / "build.sh"), str(out)],
                           capture_output=True, text=True, check=False, timeout=BUILD_TIMEOUT)
    assert build.returncode == 0, build.stderr[-4000:]
    return Packages(out / f"pyctdb_{VERSION}_all.deb", out / f"pyctdb-{VERSION}-1.noarch.rpm",
                    (out / "lintian.txt").read_text(), time.monotonic() - start)


def deb_files(deb: Path) -> set[str]:
    names = set()
    for line in run("dpkg-deb", "-c", str(deb)).splitlines():
        name = line.split(None, 5)[5].split(" -> ")[0]
        names.add(name.removeprefix(".").rstrip("/") or "/")
    return names


def test_build_is_quick_and_lintian_reports_no_error(packages: Packages) -> None:
    assert packages.deb.is_file()
    assert packages.rpm.is_file()
    errors = [ln for ln in packages.lintian.splitlines() if ln.startswith("E: ")]
    assert errors == [], packages.lintian
    assert packages.seconds < 120, f"packaging/build.sh took {packages.seconds:.0f}s"


def test_deb_holds_the_commands_unit_modules_and_config(packages: Packages) -> None:
    files = deb_files(packages.deb)
    expected = {
        *COMMANDS, NFS_SCRIPT, *CONFFILES,
        "/lib/systemd/system/ctdb.service",
        "/usr/lib/tmpfiles.d/pyctdb.conf",
        "/etc/ctdb/events/legacy",
        f"{SITE}/ctdb/__init__.py", f"{SITE}/ctdb/masterd/main.py", f"{SITE}/ctdb/cli/main.py",
        f"{SITE}/netfs/__init__.py", f"{SITE}/netfs/templates/smb.conf.j2",
        f"{SITE}/nfs_scripts/callout.py",
        "/usr/share/doc/pyctdb/README.md", "/usr/share/doc/pyctdb/docs/config.md",
        "/usr/share/doc/pyctdb/copyright",
    }
    assert expected <= files, sorted(expected - files)
    assert [f for f in files if UNWANTED.search(f) or "__pycache__" in f] == []
    # The unit is the source tree's, byte for byte.
    unit = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(packages.deb)],
                          capture_output=True, check=True).stdout
    listing = subprocess.run(["tar", "-xOf", "-", "./lib/systemd/system/ctdb.service"],
                             input=unit, capture_output=True, check=True).stdout
    assert listing == (ROOT / "packaging" / "systemd" / "ctdb.service").read_bytes()
    control = subprocess.run(["dpkg-deb", "--ctrl-tarfile", str(packages.deb)],
                             capture_output=True, check=True).stdout
    conffiles = subprocess.run(["tar", "-xOf", "-", "./conffiles"], input=control,
                               capture_output=True, check=True).stdout.decode().split()
    assert sorted(conffiles) == sorted(CONFFILES)


def test_deb_fields(packages: Packages) -> None:
    def field(name: str) -> str:
        return run("dpkg-deb", "-f", str(packages.deb), name).strip()

    assert field("Package") == "pyctdb"
    assert field("Version") == VERSION
    assert field("Architecture") == "all"
    depends = [d.strip() for d in field("Depends").split(",")]
    for wanted in ("python3:any (>= 3.11~)", "python3-jinja2 (>= 3.1)",
                   "python3-pyroute2 (>= 0.7.2)", "python3-psutil (>= 5.9)",
                   "python3-dbus-next (>= 0.2.3) | python3-dbus-fast (>= 1.84)",
                   "iproute2", "nftables", "default-dbus-system-bus | dbus-system-bus"):
        assert wanted in depends, depends
    # dbus-fast only as the alternative: Debian 12's tested choice is dbus-next.
    assert not [d for d in depends if d.startswith("python3-dbus-fast")], depends
    assert field("Conflicts") == "ctdb"
    assert field("Replaces") == "ctdb"
    assert "samba" in field("Recommends")


def test_deb_never_starts_or_restarts_the_node(packages: Packages) -> None:
    control = subprocess.run(["dpkg-deb", "--ctrl-tarfile", str(packages.deb)],
                             capture_output=True, check=True).stdout

    def script(name: str) -> str:
        return subprocess.run(["tar", "-xOf", "-", f"./{name}"], input=control,
                              capture_output=True, check=False).stdout.decode()

    postinst, prerm = script("postinst"), script("prerm")
    assert "deb-systemd-invoke" not in postinst  # no start, restart or try-restart
    # enabled only if it was enabled before (an upgrade keeps the admin's choice)
    assert "was-enabled 'ctdb.service'" in postinst
    assert "deb-systemd-invoke stop ctdb.service" in prerm
    assert '"$1" = remove' in prerm  # on removal only, not on upgrade
    assert script("preinst") == ""  # nothing stops the node before an upgrade


def test_rpm_layout_and_dependencies(packages: Packages) -> None:
    rpm = str(packages.rpm)
    files = set(run("rpm", "-qlp", rpm).split())
    site = next(f for f in files if f.endswith("/site-packages/ctdb/__init__.py"))
    site = site.removesuffix("/ctdb/__init__.py")
    assert re.fullmatch(r"/usr/lib/python3\.\d+/site-packages", site), site
    expected = {
        *COMMANDS, NFS_SCRIPT, *CONFFILES,
        "/usr/lib/systemd/system/ctdb.service", "/usr/lib/tmpfiles.d/pyctdb.conf",
        "/etc/ctdb/events/legacy", f"{site}/ctdb/masterd/main.py",
        f"{site}/netfs/templates/ganesha.conf.j2", f"{site}/nfs_scripts/callout.py",
        f"{site}/pyctdb-{VERSION}.dist-info/METADATA", "/usr/share/doc/pyctdb/README.md",
    }
    assert expected <= files, sorted(expected - files)
    assert [f for f in files if UNWANTED.search(f)] == []
    assert sorted(run("rpm", "-qp", "--configfiles", rpm).split()) == sorted(CONFFILES)
    requires = run("rpm", "-qp", "--requires", rpm).splitlines()
    for wanted in ("python3-pyroute2 >= 0.7.2", "python3-jinja2 >= 3.1",
                   "python3-psutil >= 5.9", "(python3-dbus-fast or python3-dbus-next)",
                   "iproute", "nftables"):
        assert wanted in requires, requires
    assert not [r for r in requires if "dist(dbus-fast)" in r], requires  # no generated one
    assert run("rpm", "-qp", "--conflicts", rpm).split() == ["ctdb"]
    scripts = run("rpm", "-qp", "--scripts", rpm)
    assert "preset ctdb.service" in scripts
    assert "restart" not in scripts


# -- the .deb in a node -------------------------------------------------------------------
NAME = f"pk{os.getpid() % 100000}"
NODE_PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture(scope="module")
def node() -> Iterator[Sandbox]:
    """A booted clone of this machine, one node, with no pyctdb in it yet."""
    with Sandbox(Options(name=NAME, nodes=1, backend="nspawn", public_ips=1,
                         pyctdb_unit=False)) as sb:
        yield sb
    assert leftovers(NAME) == []


def in_node(sb: Sandbox, *argv: str, check: bool = True,
            timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """*argv* in the node with the node's own environment: the package's commands on
    PATH and CTDB_BASE unset (the sandbox's would point at the venv and its directory)."""
    return sb.exec(0, ["env", "-i", NODE_PATH, "LC_ALL=C.UTF-8",
                       "DEBIAN_FRONTEND=noninteractive", *argv], check=check, timeout=timeout)


def test_deb_installs_in_a_clean_node_and_its_service_runs(packages: Packages,
                                                           node: Sandbox) -> None:
    sb = node
    spec = sb.topo.node(0)
    # This machine is a container image whose policy-rc.d refuses every service action;
    # the node is a plain system, so that the package's own choices are what is seen.
    in_node(sb, "rm", "-f", "/usr/sbin/policy-rc.d")
    samba_ctdb = in_node(sb, "dpkg-query", "-W", "-f=${Status}", "ctdb",
                         check=False).stdout == "install ok installed"
    shutil.copy(packages.deb, spec.root / packages.deb.name)  # the node's bound directory
    install = in_node(sb, "dpkg", "-i", str(spec.root / packages.deb.name), timeout=120)
    if samba_ctdb:  # Conflicts + Replaces: dpkg removes Samba's ctdb in pyctdb's favour
        assert "will remove ctdb in favour of pyctdb" in install.stdout + install.stderr
    assert in_node(sb, "dpkg-query", "-W", "-f=${Status}", "pyctdb").stdout == \
        "install ok installed"
    # Installed, neither enabled nor started; the installed unit lints clean.
    unit = "ctdb.service"
    assert in_node(sb, "systemctl", "is-enabled", unit, check=False).stdout.strip() == "disabled"
    assert in_node(sb, "systemctl", "is-active", unit, check=False).stdout.strip() == "inactive"
    verify = in_node(sb, "systemd-analyze", "verify", "/lib/systemd/system/ctdb.service",
                     check=False)
    assert (verify.returncode, verify.stderr.strip()) == (0, ""), verify.stderr
    assert in_node(sb, "stat", "-c", "%a", "/run/ctdb").stdout.strip() == "755"  # tmpfiles
    # The packaged NFS script, found through the data directory.
    scripts = in_node(sb, "env", "CTDB_SCRIPTS_DATA_DIR=/usr/share/pyctdb", "ctdb", "event",
                      "script", "list", "legacy").stdout
    assert "60.nfs" in scripts

    # A 1-node cluster on the node's addresses: the sandbox's nodes, public_addresses and
    # key, the package's ctdb.conf (all defaults: /run/ctdb, /var/lib/ctdb, the log file).
    for name, mode in (("nodes", "0644"), ("public_addresses", "0644"),
                       ("cluster.key", "0600")):
        in_node(sb, "install", "-m", mode, str(spec.base / name), f"/etc/ctdb/{name}")
    in_node(sb, "systemctl", "start", unit, timeout=90)  # Type=notify: returns after READY=1
    props = dict(line.split("=", 1) for line in in_node(
        sb, "systemctl", "show", "-p", "ActiveState,SubState,ExecStart", unit
    ).stdout.splitlines())
    assert (props["ActiveState"], props["SubState"]) == ("active", "running")
    assert "path=/usr/sbin/ctdbd " in props["ExecStart"]

    def node_ok() -> bool:
        out = in_node(sb, "ctdb", "status", check=False, timeout=10).stdout
        return re.search(rf"pnn:0 {re.escape(spec.private_ip)}\s+OK \(THIS NODE\)", out) \
            is not None

    wait_for("ctdb status to show node 0 OK", node_ok, timeout=30)
    public = sb.topo.public_ips[0]
    wait_for(f"{public} on node 0", lambda: f"{public} 0" in in_node(
        sb, "ctdb", "ip", check=False, timeout=10).stdout, timeout=30)
    # The packaged ctdbd (the host's view of the node's process), not the venv's.
    pid = sb.pid(0)
    assert pid is not None
    assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2] == \
        [b"/usr/bin/python3", b"/usr/sbin/ctdbd"]

    # Removing the package stops the node first, and the stop releases its address.
    in_node(sb, "dpkg", "-r", "pyctdb", timeout=120)
    assert in_node(sb, "systemctl", "is-active", unit, check=False).stdout.strip() != "active"
    addresses = in_node(sb, "ip", "-o", "addr", "show").stdout
    assert f" {public}/" not in addresses

