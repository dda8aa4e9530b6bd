"""The Ansible role (ansible/roles/pyctdb): lint, input checks, rendering.

The role runs under Debian's ansible-playbook (ansible-core 2.14, /usr/bin/python3); its
filter plugin finds pyctdb's netfs and ctdb.config in this source tree.  Playbooks run
against local "nodes" (connection local), each with its own CTDB_BASE under a temporary
directory, through the role's ``configure`` entry point (render, check, write: no
package, no service), and report through the JSON callback.  The last tests deploy the
.deb over SSH to a lab of three systemd containers with the main entry point, and watch
what a client sees meanwhile.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from ctdb.transport.auth import parse_keys
from netfs import render
from netfs.shares import shares_from_data

ROOT = Path(__file__).resolve().parents[1]
ROLES = ROOT / "ansible" / "roles"
VENV_BIN = Path(sys.executable).parent
ANSIBLE_PLAYBOOK = "/usr/bin/ansible-playbook"
ANSIBLE_LINT = "/usr/bin/ansible-lint"
HOST_PYTHON = "/usr/bin/python3"  # the interpreter of Debian's ansible and of the .deb
# ansible-core 2.14's default ansible_managed, through the role's "| comment".
MANAGED = "#\n# Ansible managed\n#"
NODES = ("n1", "n2")  # two nodes show the same bytes; each node costs run time

SHARES: list[dict[str, Any]] = [
    {"name": "data", "path": "/clusterfs/data", "comment": "Team data",
     "valid_users": ["@staff", "alice"],
     "nfs": {"export_id": 7, "clients": ["198.18.2.0/24"], "squash": "root_squash"}},
    {"name": "pub", "path": "/clusterfs/pub", "protocols": ["smb"], "read_only": True,
     "guest_ok": True},
    {"name": "scratch", "path": "/clusterfs/scratch", "protocols": ["nfs"]},
]
SMB_GLOBALS = {"workgroup": "EXAMPLE", "log level": "1"}
GANESHA = {"recovery_root": "/clusterfs/ganesha", "grace_period": 60, "lease_lifetime": 30,
           "nfsv4": {"Minor_Versions": "1,2"}}

GOOD: dict[str, Any] = {
    "pyctdb_nodes": ["198.18.1.1", "198.18.1.2", "#198.18.1.3", "198.18.1.4"],
    "pyctdb_public_addresses": [
        {"address": "198.18.2.101/24", "interfaces": ["eth1"]},
        {"address": "198.18.2.102/24", "interfaces": ["eth1", "eth2"]},
        {"address": "2001:2::65/64", "interfaces": ["eth1"]},
    ],
    "pyctdb_cluster_lock": "/clusterfs/.ctdb/reclock",
    "pyctdb_tunables": {"MonitorInterval": 10, "KeepaliveInterval": 1},
    "pyctdb_ctdb_conf": {"logging": {"location": "syslog", "log level": "NOTICE"},
                         "legacy": {"realtime scheduling": False}},
    "pyctdb_script_options": {"CTDB_NFS_CALLOUT": "pyctdb-nfs-callout",
                              "CTDB_NFS_STATE_FS_TYPE": "ext4 fuse"},
    "pyctdb_services": {"samba": True, "nfs": "ganesha"},
    "pyctdb_shares": SHARES,
    "pyctdb_smb_globals": SMB_GLOBALS,
    "pyctdb_ganesha": GANESHA,
    "pyctdb_event_scripts": ["00.ctdb", "50.samba"],
}


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        # ctdb-config (validate on write) from this venv; nothing else from it
        PATH=f"{VENV_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ANSIBLE_ROLES_PATH=str(ROLES),
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"),
        ANSIBLE_REMOTE_TEMP=str(tmp / "ansible-tmp"),
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.pop("ANSIBLE_CONFIG", None)
    return env


def _playbook(tmp: Path, *args: str, play: Any, inventory: Any) -> dict[str, Any]:
    """Run a playbook; the JSON callback's document (plays, tasks, stats)."""
    # JSON is YAML: no YAML library needed on this side
    (tmp / "play.yml").write_text(json.dumps(play, indent=1))
    (tmp / "inventory.yml").write_text(json.dumps(inventory, indent=1))
    result = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", str(tmp / "inventory.yml"), str(tmp / "play.yml"), *args],
        capture_output=True, text=True, env=_env(tmp), cwd=tmp, timeout=180, check=False)
    try:
        return json.loads(result.stdout)  # type: ignore[no-any-return]
    except json.JSONDecodeError:
        pytest.fail(f"ansible-playbook gave no JSON (rc {result.returncode}):\n"
                    f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def _failures(doc: dict[str, Any]) -> list[str]:
    """The messages of failed task results (per item for loops), in order."""
    out = []
    for play in doc["plays"]:
        for task in play["tasks"]:
            for res in task["hosts"].values():
                if res.get("unreachable"):
                    out.append(f"unreachable: {res.get('msg')}")
                if not res.get("failed"):
                    continue
                items = [r for r in res.get("results", []) if r.get("failed")]
                out.extend(str(r.get("msg")) for r in items) if items else out.append(
                    str(res.get("msg")))
    return out


# -- (a) ansible-lint ---------------------------------------------------------------------


def test_ansible_lint_production_profile_is_clean() -> None:
    result = subprocess.run(
        [ANSIBLE_LINT, "--profile", "production", "--nocolor", "ansible/"], cwd=ROOT,
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "0 failure(s), 0 warning(s)" in output, output
    assert "production" in output, output


# -- (b) bad inputs are refused, each with a clear message ----------------------------------

# (case, changed inputs, None to leave an input out, what the message must say)
BAD_INPUTS: list[tuple[str, dict[str, Any], str]] = [
    ("public address without an interface",
     {"pyctdb_public_addresses": [{"address": "198.18.2.101/24"}]},
     "missing required arguments: interfaces found in pyctdb_public_addresses"),
    ("no nodes", {"pyctdb_nodes": None}, "missing required arguments: pyctdb_nodes"),
    ("an unknown NFS server", {"pyctdb_services": {"nfs": "knfsd"}},
     "value of nfs must be one of: none, ganesha, kernel, got: knfsd"),
    ("an unknown key rotation", {"pyctdb_cluster_key_rotation": "later"},
     "value of pyctdb_cluster_key_rotation must be one of: none, begin, finish"),
    ("a node that is not an IP", {"pyctdb_nodes": ["198.18.1.1", "node2"]},
     'pyctdb_nodes: "node2" is not an IP address'),
    ("nodes as one string", {"pyctdb_nodes": "198.18.1.1,198.18.1.2"},
     "pyctdb_nodes: must be a list"),
    ("a node twice", {"pyctdb_nodes": ["198.18.1.1", "198.18.1.1"]},
     "pyctdb_nodes: a node is listed twice"),
    ("only deleted nodes", {"pyctdb_nodes": ["#198.18.1.1"]}, "pyctdb_nodes: no live node"),
    ("a public address without bits",
     {"pyctdb_public_addresses": [{"address": "198.18.2.101", "interfaces": ["eth1"]}]},
     'pyctdb_public_addresses: "198.18.2.101" is not ADDRESS/BITS'),
    ("a prefix too long",
     {"pyctdb_public_addresses": [{"address": "198.18.2.101/33", "interfaces": ["eth1"]}]},
     'pyctdb_public_addresses: "198.18.2.101/33" is not ADDRESS/BITS'),
    ("an empty interface list",
     {"pyctdb_public_addresses": [{"address": "198.18.2.101/24", "interfaces": []}]},
     "pyctdb_public_addresses: 198.18.2.101/24 needs at least one interface"),
    ("an impossible interface name",
     {"pyctdb_public_addresses": [{"address": "198.18.2.101/24", "interfaces": ["eth1:0"]}]},
     "each a Linux interface name"),
    ("a public address twice",
     {"pyctdb_public_addresses": [{"address": "198.18.2.101/24", "interfaces": ["eth1"]},
                                  {"address": "198.18.2.101/25", "interfaces": ["eth2"]}]},
     "pyctdb_public_addresses: an address is listed twice"),
    ("a negative tunable", {"pyctdb_tunables": {"MonitorInterval": -1}},
     "pyctdb_tunables: MonitorInterval: -1 is not a non-negative integer"),
    ("the cluster lock through pyctdb_ctdb_conf",
     {"pyctdb_ctdb_conf": {"Cluster": {"cluster lock": "/x"}}},
     "pyctdb_ctdb_conf: [Cluster] cluster lock: set by the role"),
    ("a section that is not a dict", {"pyctdb_ctdb_conf": {"logging": "syslog"}},
     "pyctdb_ctdb_conf: [logging] must be a dict of options"),
    ("a script option that is not a name", {"pyctdb_script_options": {"A-B": "1"}},
     "pyctdb_script_options: A-B: not shell variable names"),
    ("an event script without its number", {"pyctdb_event_scripts": ["samba"]},
     "an event script is named NN.name"),
    ("Ganesha without a recovery directory", {"pyctdb_ganesha": {}},
     "pyctdb_ganesha.recovery_root is required"),
    ("a share netfs refuses", {"pyctdb_shares": [{"name": "x", "path": "srv"}]},
     "pyctdb_shares: share 'x': path: 'srv' is not an absolute path"),
    ("a package source without a package",
     {"pyctdb_package_source": "file", "pyctdb_package_file": ""},
     "pyctdb_package_file: with pyctdb_package_source file"),
    ("a short cluster key", {"pyctdb_cluster_key": "sesame"},
     "pyctdb_cluster_key: a key is one line of at least 16 characters"),
]


def _inputs(changes: dict[str, Any]) -> dict[str, Any]:
    inputs = {**GOOD, **changes}
    return {k: v for k, v in inputs.items() if v is not None}


def test_bad_inputs_are_refused_with_clear_messages(tmp_path: Path) -> None:
    """Every case through the role's own checks (argument specs, then the asserts).

    One playbook: a block per case including the role's ``validate`` entry point, whose
    rescue records what refused it.
    """
    tasks = []
    for i, (case, changes, _) in enumerate(BAD_INPUTS):
        tasks.append({
            "name": f"Case {i}: {case}",
            "block": [{"name": f"Try {i}", "ansible.builtin.include_role": {
                "name": "pyctdb", "tasks_from": "validate"}, "vars": _inputs(changes)}],
            "rescue": [{"name": f"Refused {i}", "ansible.builtin.set_fact": {"refused": (
                "{{ refused | default({}) | combine({'case" + str(i)
                + "': ansible_failed_result}) }}")}}],
        })
    tasks.append({"name": "Report", "ansible.builtin.debug": {"var": "refused"}})
    play = [{"name": "Bad inputs", "hosts": "all", "connection": "local",
             "gather_facts": False, "tasks": tasks}]
    doc = _playbook(tmp_path, play=play,
                    inventory={"all": {"hosts": {"localhost": {
                        "ansible_python_interpreter": HOST_PYTHON}}}})
    report = doc["plays"][0]["tasks"][-1]["hosts"]["localhost"]["refused"]
    for i, (case, _, expected) in enumerate(BAD_INPUTS):
        assert f"case{i}" in report, f"{case}: accepted"
        failed = report[f"case{i}"]
        items = [r["msg"] for r in failed.get("results", []) if r.get("failed")]
        message = " ".join(items) if items else failed["msg"]
        assert expected in message, f"{case}: {message}"
        assert "sesame" not in json.dumps(failed), f"{case}: the key leaked"


def test_the_main_entry_point_checks_its_inputs_before_any_task(tmp_path: Path) -> None:
    """``roles: [pyctdb]`` in check mode with -e bad inputs stops at the argument specs."""
    play = [{"name": "Deploy", "hosts": "all", "connection": "local", "gather_facts": False,
             "roles": ["pyctdb"]}]
    bad = {**GOOD, "pyctdb_public_addresses": [{"address": "198.18.2.101/24"}]}
    doc = _playbook(tmp_path, "--check", "-e", json.dumps(bad), play=play,
                    inventory={"all": {"hosts": {"localhost": {
                        "ansible_python_interpreter": HOST_PYTHON}}}})
    tasks = doc["plays"][0]["tasks"]
    assert len(tasks) == 1, [t["task"]["name"] for t in tasks]
    assert "arg spec 'main'" in tasks[0]["task"]["name"]
    assert _failures(doc) == ["Validation of arguments failed:\nmissing required arguments:"
                              " interfaces found in pyctdb_public_addresses"]


# -- (c) rendering: local nodes, each its own CTDB_BASE -------------------------------


@dataclass
class Cluster:
    """Local nodes configured by the role's ``configure`` entry point."""

    tmp: Path
    inputs: dict[str, Any]

    def base(self, node: str) -> Path:
        return self.tmp / node / "ctdb"

    def inventory(self) -> dict[str, Any]:
        hosts = {}
        for node in NODES:
            hosts[node] = {
                "ansible_connection": "local",
                "ansible_python_interpreter": HOST_PYTHON,
                "pyctdb_base": str(self.base(node)),
                "pyctdb_smb_conf_path": str(self.tmp / node / "smb.conf"),
                "pyctdb_ganesha_conf_path": str(self.tmp / node / "ganesha.conf"),
            }
        return {"cluster": {"hosts": hosts, "vars": self.inputs}}

    def run(self, *args: str, **extra: Any) -> dict[str, Any]:
        play = [{"name": "Configure", "hosts": "cluster", "gather_facts": False,
                 "tasks": [{"name": "Configure the nodes", "ansible.builtin.include_role": {
                     "name": "pyctdb", "tasks_from": "configure"}}]}]
        extra_args = ("-e", json.dumps(extra)) if extra else ()
        return _playbook(self.tmp, *args, *extra_args, play=play,
                         inventory=self.inventory())

    def files(self, node: str) -> dict[str, bytes]:
        base = self.base(node)
        names = ["ctdb.conf", "nodes", "public_addresses", "ctdb.tunables", "script.options",
                 "cluster.key"]
        out = {name: (base / name).read_bytes() for name in names}
        out["smb.conf"] = (self.tmp / node / "smb.conf").read_bytes()
        out["ganesha.conf"] = (self.tmp / node / "ganesha.conf").read_bytes()
        return out

    def keys(self, node: str = "n1") -> list[str]:
        return [k.decode() for k in parse_keys((self.base(node) / "cluster.key").read_text())]


def _changed(doc: dict[str, Any]) -> dict[str, int]:
    return {host: stats["changed"] for host, stats in doc["stats"].items()}


def _ok(doc: dict[str, Any]) -> None:
    failures = _failures(doc)
    assert not failures, failures
    assert all(s["failures"] == 0 and s["unreachable"] == 0 for s in doc["stats"].values())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("ansible-cluster")
    c = Cluster(tmp, dict(GOOD))
    c.first_run = c.run()  # type: ignore[attr-defined]
    yield c
    shutil.rmtree(tmp, ignore_errors=True)


def test_first_run_writes_every_file_on_every_node(cluster: Cluster) -> None:
    doc = cluster.first_run  # type: ignore[attr-defined]
    _ok(doc)
    assert all(n > 0 for n in _changed(doc).values()), _changed(doc)
    for node in NODES:
        base = cluster.base(node)
        assert (base / "events" / "legacy").is_dir()
        assert (base / "cluster.key").stat().st_mode & 0o777 == 0o600
        assert (base / "ctdb.conf").stat().st_mode & 0o777 == 0o644


def test_every_node_gets_the_same_bytes(cluster: Cluster) -> None:
    first = cluster.files(NODES[0])
    for node in NODES[1:]:
        assert cluster.files(node) == first, node
    # one key, generated once on the controller: 256 bits in hex
    (key,) = cluster.keys()
    assert len(key) == 64
    int(key, 16)


@pytest.mark.parametrize(("kind", "name"), [
    ("conf", "ctdb.conf"), ("nodes", "nodes"), ("public_addresses", "public_addresses"),
    ("tunables", "ctdb.tunables"), ("script.options", "script.options")])
def test_rendered_files_pass_ctdb_config(cluster: Cluster, kind: str, name: str) -> None:
    base = cluster.base(NODES[-1])
    result = subprocess.run([str(VENV_BIN / "ctdb-config"), "check-file", kind, str(base / name)],
                            capture_output=True, text=True, timeout=30, check=False,
                            env={**os.environ, "CTDB_BASE": str(base)})
    assert result.returncode == 0, result.stderr


def test_rendered_files_say_what_the_inputs_say(cluster: Cluster) -> None:
    from ctdb.config import load

    config = load(cluster.base(NODES[-1]))
    assert [n.address and str(n.address) for n in config.nodes or []] == [
        "198.18.1.1", "198.18.1.2", None, "198.18.1.4"]
    assert [(str(p.address), p.interfaces) for p in config.public_addresses] == [
        ("198.18.2.101/24", ("eth1",)), ("198.18.2.102/24", ("eth1", "eth2")),
        ("2001:2::65/64", ("eth1",))]
    assert config.conf.cluster_lock == "/clusterfs/.ctdb/reclock"
    assert config.conf.log_location == "syslog"
    assert config.conf.realtime_scheduling is False
    assert config.conf.services == {"samba": True, "nmbd": False, "winbind": False,
                                    "nfs": "ganesha"}
    assert config.tunables.explicit == {"MonitorInterval": 10, "KeepaliveInterval": 1}
    assert config.script_options == {"CTDB_NFS_CALLOUT": "pyctdb-nfs-callout",
                                     "CTDB_NFS_STATE_FS_TYPE": "ext4 fuse"}
    text = (cluster.base(NODES[-1]) / "ctdb.conf").read_text()
    assert text.startswith(MANAGED + "\n")
    # no header in the nodes file: a '#' line there is a deleted node
    assert (cluster.base(NODES[-1]) / "nodes").read_text() == (
        "198.18.1.1\n198.18.1.2\n#198.18.1.3\n198.18.1.4\n")


def test_smb_conf_and_ganesha_conf_are_netfs_own_rendering(cluster: Cluster) -> None:
    shares = shares_from_data(SHARES)
    smb = render.render_smb(shares, SMB_GLOBALS, header=MANAGED)
    ganesha = render.render_ganesha(
        shares, GANESHA["recovery_root"], grace_period=GANESHA["grace_period"],
        lease_lifetime=GANESHA["lease_lifetime"], nfsv4=GANESHA["nfsv4"], header=MANAGED)
    files = cluster.files("n1")
    assert files["smb.conf"].decode() == smb
    assert files["ganesha.conf"].decode() == ganesha
    render.validate_smb(smb)
    render.validate_ganesha(ganesha)


def test_a_second_run_changes_nothing(cluster: Cluster) -> None:
    before = {node: cluster.files(node) for node in NODES}
    doc = cluster.run()
    _ok(doc)
    assert _changed(doc) == dict.fromkeys(NODES, 0)
    assert {node: cluster.files(node) for node in NODES} == before


def test_check_mode_shows_the_diff_and_writes_nothing(cluster: Cluster) -> None:
    before = {node: cluster.files(node) for node in NODES}
    shares = [{**SHARES[0], "path": "/clusterfs/team"}, *SHARES[1:]]
    doc = cluster.run("--check", "--diff", pyctdb_shares=shares)
    _ok(doc)
    assert {node: cluster.files(node) for node in NODES} == before
    smb_task = "Write smb.conf, rendered by netfs and checked by testparm"
    diffs = [
        d for play in doc["plays"] for task in play["tasks"]
        if task["task"]["name"].endswith(smb_task)
        for res in task["hosts"].values() for d in res.get("diff", [])
    ]
    assert len(diffs) == len(NODES)
    assert all("-    path = /clusterfs/data\n+    path = /clusterfs/team\n" in _unified(d)
               for d in diffs)
    # the key file's content is never shown
    assert all(
        res.get("diff") in (None, []) or "censored" in json.dumps(res)
        for play in doc["plays"] for task in play["tasks"]
        if "cluster key" in task["task"]["name"] for res in task["hosts"].values())


def _unified(diff: dict[str, Any]) -> str:
    import difflib

    return "".join(difflib.unified_diff(diff["before"].splitlines(True),
                                        diff["after"].splitlines(True)))


def test_a_node_with_other_inputs_is_refused(cluster: Cluster) -> None:
    before = {node: cluster.files(node) for node in NODES}
    inventory = cluster.inventory()
    inventory["cluster"]["hosts"]["n2"]["pyctdb_nodes"] = ["198.18.1.1", "198.18.1.2"]
    play = [{"name": "Configure", "hosts": "cluster", "gather_facts": False,
             "tasks": [{"name": "Configure the nodes", "ansible.builtin.include_role": {
                 "name": "pyctdb", "tasks_from": "configure"}}]}]
    tmp = cluster.tmp / "mixed"
    tmp.mkdir(exist_ok=True)
    doc = _playbook(tmp, play=play, inventory=inventory)
    failures = _failures(doc)
    assert failures, "accepted"
    assert "cluster-wide inputs differ between the nodes of the play" in failures[0]
    assert {node: cluster.files(node) for node in NODES} == before


def test_the_cluster_key_rotates_in_two_runs(cluster: Cluster) -> None:
    (old,) = cluster.keys()
    doc = cluster.run(pyctdb_cluster_key_rotation="begin")
    _ok(doc)
    new, kept = cluster.keys()
    assert kept == old
    assert new != old
    assert all(cluster.keys(node) == [new, old] for node in NODES)
    assert new not in json.dumps(doc)  # no_log
    assert old not in json.dumps(doc)
    doc = cluster.run(pyctdb_cluster_key_rotation="finish")
    _ok(doc)
    assert all(cluster.keys(node) == [new] for node in NODES)
    assert new not in json.dumps(doc)


# The key file's decision, the role's filter on the controller: (the nodes' key files,
# pyctdb_cluster_key, pyctdb_cluster_key_rotation) -> the key file's keys, or the error.
# "NEW" stands for a generated key.
K1, K2, K3 = "a" * 64, "b" * 64, "c" * 64
KEY_CASES: list[tuple[str, list[str], str, str, list[str] | str]] = [
    ("first run generates a key", ["", ""], "", "none", ["NEW"]),
    ("first run takes the given key", ["", ""], K1, "none", [K1]),
    ("later runs keep the key", [K1, K1], "", "none", [K1]),
    ("a new node gets the cluster's key", [K1, ""], "", "none", [K1]),
    ("comments and blank lines are not keys", [f"# x\n\n{K1}\n", K1], "", "none", [K1]),
    ("begin adds a generated key in front", [K1, K1], "", "begin", ["NEW", K1]),
    ("begin adds the given key in front", [K1, K1], K2, "begin", [K2, K1]),
    ("begin again changes nothing", [f"{K2}\n{K1}", f"{K2}\n{K1}"], "", "begin", [K2, K1]),
    ("begin half done: the nodes that have both win", [f"{K2}\n{K1}", K1], "", "begin",
     [K2, K1]),
    ("finish keeps the new key", [f"{K2}\n{K1}", f"{K2}\n{K1}"], "", "finish", [K2]),
    ("finish half done", [K2, f"{K2}\n{K1}"], "", "finish", [K2]),
    ("finish again changes nothing", [K2, K2], "", "finish", [K2]),
    ("none during a rotation keeps both", [f"{K2}\n{K1}", K1], "", "none", [K2, K1]),
    ("begin with the current key", [K1, K1], K1, "begin", "is the current key"),
    ("finish with another key", [f"{K2}\n{K1}"] * 2, K3, "finish",
     "is not the key the rotation began with"),
    ("a given key the nodes do not hold", [K1, K1], K2, "none",
     "rotate with pyctdb_cluster_key_rotation=begin"),
    ("nodes with unrelated keys", [K1, K2], "", "none", "the nodes hold different cluster keys"),
]

_KEY_SCRIPT = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("pyctdb_filters", sys.argv[1])
plugin = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plugin)
out = []
for files, key, rotation in json.load(sys.stdin):
    try:
        out.append(plugin.FilterModule().filters()["pyctdb_cluster_keys"](files, key, rotation))
    except Exception as exc:
        out.append(str(exc))
print(json.dumps(out))
"""


def test_cluster_key_decisions() -> None:
    """The filter under Debian's ansible (its plugin imports ansible), every case at once."""
    plugin = ROLES / "pyctdb" / "filter_plugins" / "pyctdb_filters.py"
    result = subprocess.run(
        [HOST_PYTHON, "-c", _KEY_SCRIPT, str(plugin)], capture_output=True, text=True,
        input=json.dumps([[files, key, rotation] for _, files, key, rotation, _ in KEY_CASES]),
        timeout=60, check=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    for (case, _, _, _, expected), got in zip(KEY_CASES, json.loads(result.stdout), strict=True):
        if isinstance(expected, str):
            assert isinstance(got, str), f"{case}: {got}"
            assert expected in got, f"{case}: {got}"
            continue
        assert isinstance(got, list), f"{case}: {got}"
        assert len(got) == len(expected), f"{case}: {got}"
        for want, key in zip(expected, got, strict=True):
            if want == "NEW":
                assert len(key) == 64, f"{case}: {got}"
                assert key not in (K1, K2, K3), f"{case}: {got}"
                int(key, 16)
            else:
                assert key == want, f"{case}: {got}"


# -- (d) the whole role over SSH, on a 3-node lab of systemd containers ---------------------
#
# One lab for the tests below, which run in order, each changing the inputs the one
# before applied: two nodes deployed and serving SMB, a third joins, a rolling restart
# under the client probe, a public address added live, the same inputs again, check mode.

LAB = f"an{os.getpid() % 100000}"
NODE_ENV = ["env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C.UTF-8"]
SMB_SHARE = "data"  # the lab's share on the nodes' shared storage (ctdb.sandbox.services)
# seconds a public address may go unanswered in a rolling restart: a graceful move takes
# a probe interval or two, a node's loss ~1 s (docs/failover.md)
OUTAGE_BOUND = 1.0
ROLL_STEPS = ("Disable the node, so its public addresses move to the others first",
              "Restart the node manager", "Enable the node again")


def _start_sshd(sb: Any, tmp: Path) -> None:
    """sshd in every node on its fixed public address, root by key only."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / "id")],
                   check=True, timeout=30)
    for node in sb.topo.nodes:
        keys = node.root / "authorized_keys"  # the node's directory is bound in the node
        shutil.copy(tmp / "id.pub", keys)
        keys.chmod(0o600)
        (node.root / "sshd_config").write_text(
            f"ListenAddress {node.public_ip}\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            f"StrictModes no\nAuthorizedKeysFile {keys}\nPidFile {node.root}/sshd.pid\n")
        sb.exec(node.pnn, ["mkdir", "-p", "/run/sshd"], check=True)
        sb.exec(node.pnn, ["systemd-run", "--unit=lab-sshd", "/usr/sbin/sshd", "-D", "-f",
                           str(node.root / "sshd_config")], check=True)


Step = tuple[str, list[str], float, float]


def _steps(doc: dict[str, Any], names: tuple[str, ...]) -> list[Step]:
    """(task name, hosts it ran for, start, end) of the named tasks, in the order they ran.

    A delegated task runs for the play's first host; the callback does not say where.
    """
    out = []
    for task in doc["plays"][0]["tasks"]:
        name = task["task"]["name"].removeprefix("pyctdb : ")
        hosts = sorted(h for h, res in task["hosts"].items() if not res.get("skipped"))
        if name in names and hosts:
            span = task["task"]["duration"]
            out.append((name, hosts, _epoch(span["start"]), _epoch(span["end"])))
    return out


def _task_results(doc: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """Every host's result of the task named *name* (skipped ones included)."""
    return [res for task in doc["plays"][0]["tasks"]
            if task["task"]["name"].removeprefix("pyctdb : ") == name
            for res in task["hosts"].values()]


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@dataclass
class Lab:
    """Three clean systemd containers (no pyctdb), sshd in each, the controller in the
    lab's client namespace; the role's inputs as the last run applied them."""

    sb: Any
    tmp: Path
    inputs: dict[str, Any]

    @property
    def ips(self) -> list[str]:
        """The public addresses the role gives the cluster now."""
        return [a["address"].split("/")[0] for a in self.inputs["pyctdb_public_addresses"]]

    def play(self, *args: str) -> dict[str, Any]:
        """The role's main entry point on the lab's nodes; the JSON callback's document."""
        sb, tmp = self.sb, self.tmp
        inventory = {"cluster": {"hosts": {f"n{n.pnn}": {"ansible_host": n.public_ip}
                                           for n in sb.topo.nodes}, "vars": self.inputs}}
        (tmp / "site.yml").write_text(json.dumps([{
            # the role gathers the few facts it needs (run time: each task counts)
            "name": "Deploy pyctdb", "hosts": "cluster", "gather_facts": False,
            "roles": ["pyctdb"]}]))
        (tmp / "inventory.yml").write_text(json.dumps(inventory))
        env = {**_env(tmp), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "ANSIBLE_PIPELINING": "1"}
        result = subprocess.run(
            sb.client_argv([ANSIBLE_PLAYBOOK, "-i", str(tmp / "inventory.yml"),
                            str(tmp / "site.yml"), *args]),
            capture_output=True, text=True, env=env, cwd=tmp, timeout=600, check=False)
        try:
            return json.loads(result.stdout)  # type: ignore[no-any-return]
        except json.JSONDecodeError:
            pytest.fail(f"ansible-playbook gave no JSON (rc {result.returncode}):\n"
                        f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")

    def in_node(self, pnn: int, *argv: str, check: bool = True) -> str:
        return str(self.sb.exec(pnn, [*NODE_ENV, *argv], check=check, timeout=60).stdout)

    def unit(self, pnn: int, prop: str, unit: str = "ctdb.service") -> str:
        return self.in_node(pnn, "systemctl", "show", "--timestamp=unix", "-p", prop,
                            "--value", unit).strip()

    def main_pids(self, pnns: tuple[int, ...] = (0, 1, 2)) -> list[int]:
        """ctdb.service's MainPID (ctdbd) on each node, as the node sees it."""
        return [int(self.unit(pnn, "MainPID")) for pnn in pnns]

    def hosts(self, via: int = 0) -> dict[str, int]:
        """Every public address and the node hosting it (-1: nobody), as *via* sees it."""
        out = self.in_node(via, "ctdb", "ip", "all")
        return {ip: int(pnn) for ip, pnn in (ln.split() for ln in out.splitlines()[1:])}

    def wait_all_ok_and_hosted(self, nodes: int) -> dict[str, int]:
        """Until *nodes* nodes are OK and every public address is hosted; who hosts which."""
        from ctdb.sandbox.lab import wait_for

        def ready() -> dict[str, int] | None:
            status = self.in_node(0, "ctdb", "nodestatus", "all", check=False)
            hosts = self.hosts()
            if status.count(" OK") != nodes or sorted(hosts) != sorted(self.ips) or \
                    -1 in hosts.values():
                return None
            return hosts

        return wait_for(f"{nodes} nodes OK and {', '.join(self.ips)} hosted", ready,
                        timeout=60, interval=0.5)

    def smb_round_trip(self, put_ip: str, get_ip: str, name: str) -> str:
        """A file put through *put_ip* and read back through *get_ip*: the same SHA-256.

        The put is tried until a deadline: a node is OK once smbd runs, and smbd may take
        a moment more to listen.
        """
        from ctdb.sandbox import fileclient, services
        from ctdb.sandbox.lab import wait_for

        data = os.urandom(256 * 1024)
        put = wait_for(f"an SMB put through {put_ip}", lambda: fileclient.smb_put(
            put_ip, SMB_SHARE, name, data, self.sb.topo.client, timeout=10), timeout=30,
            interval=0.5)
        assert put == fileclient.sha256(data)
        assert fileclient.smb_get(get_ip, SMB_SHARE, name, self.sb.topo.client) == put
        # on the storage every node shares, as smbd wrote it
        assert (services.storage(self.sb) / services.SHARE / name).read_bytes() == data
        return put


@pytest.fixture(scope="module")
def lab3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The .deb built from this tree, and a lab of three clean nodes to deploy it on.

    ``services=["smb"]`` gives the clean nodes what smbd needs and a clone of this machine
    lacks: smbd.service unmasked (not enabled) and the lab's shared storage bound at
    /srv/pyctdb (the role then writes its own smb.conf over the lab's).  Every node runs
    the probe's echo service, which answers on whatever public address the node holds.
    """
    from ctdb.sandbox import services
    from ctdb.sandbox.lab import Options, Sandbox
    from ctdb.sandbox.probe import start_echo
    from tests.leftovers import leftovers

    tmp = tmp_path_factory.mktemp("ansible-lab")
    build = subprocess.run([str(ROOT / "packaging" / "build.sh"), str(tmp / "pkg")],
                           capture_output=True, text=True, timeout=300, check=False,
                           env={**os.environ, "PYCTDB_PACKAGES": "deb"})
    assert build.returncode == 0, build.stderr[-3000:]
    (deb,) = (tmp / "pkg").glob("pyctdb_*_all.deb")
    assert services.SHARE == SMB_SHARE
    # four public addresses in the lab's network; the role gives the cluster three at first
    try:
        with Sandbox(Options(name=LAB, nodes=3, backend="nspawn", public_ips=4,
                             services=["smb"], pyctdb_unit=False)) as sb:
            _start_sshd(sb, tmp)
            start_echo(sb)
            nodes = sb.topo.nodes
            inputs: dict[str, Any] = {
                "ansible_user": "root",
                "ansible_python_interpreter": HOST_PYTHON,
                "ansible_ssh_private_key_file": str(tmp / "id"),
                "ansible_ssh_common_args": "-o StrictHostKeyChecking=no"
                                           " -o UserKnownHostsFile=/dev/null"
                                           " -o ControlMaster=auto -o ControlPersist=30s"
                                           # a short path: a unix socket's is at most 107
                                           f" -o ControlPath={sb.topo.root}/cp-%C",
                "pyctdb_nodes": [n.private_ip for n in nodes[:2]],
                "pyctdb_public_addresses": [{"address": f"{ip}/24", "interfaces": ["eth1"]}
                                            for ip in sb.topo.public_ips[:3]],
                "pyctdb_tunables": {"MonitorInterval": 15},
                "pyctdb_services": {"samba": True},
                "pyctdb_shares": [{"name": SMB_SHARE, "path": str(services.SHARE_PATH),
                                   "protocols": ["smb"], "guest_ok": True,
                                   "comment": "the lab's shared storage"}],
                "pyctdb_smb_globals": {"workgroup": "PYCTDB", "map to guest": "Bad User",
                                       "netbios name": f"PCTDB-{LAB}".upper()},
                "pyctdb_package_source": "file",
                "pyctdb_package_file": str(deb),
            }
            yield Lab(sb, tmp, inputs)
        assert leftovers(LAB) == []
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.netns
def test_two_nodes_deployed_serve_smb_through_the_public_addresses(lab3: Lab) -> None:
    """The .deb on two clean nodes: both OK, every address hosted, smbd run by serviced,
    and the share reachable from the client through a public address."""
    from ctdb.sandbox.lab import wait_for

    doc = lab3.play("--limit", "n0,n1")
    _ok(doc)
    assert "Number of nodes:2" in lab3.in_node(0, "ctdb", "nodestatus", "all", check=False)
    assert lab3.in_node(1, "systemctl", "is-enabled", "ctdb.service").strip() == "enabled"
    assert lab3.in_node(1, "stat", "-c", "%a", "/etc/ctdb/cluster.key").strip() == "600"
    hosts = lab3.wait_all_ok_and_hosted(2)
    assert sorted(set(hosts.values())) == [0, 1]
    for pnn in (0, 1):
        # smbd runs, started by the cluster (serviced), not at boot
        wait_for(f"smbd running on node {pnn}", lambda pnn=pnn: lab3.in_node(
            pnn, "ctdb", "service", "list", check=False).split()[:3] == [
                "smb", "smbd.service", "active/running"], timeout=30)
        assert lab3.in_node(pnn, "systemctl", "is-enabled", "smbd.service",
                            check=False).strip() != "enabled"
        smb_conf = lab3.in_node(pnn, "cat", "/etc/samba/smb.conf")
        assert smb_conf.startswith(MANAGED + "\n")  # the role's, not the lab's
        assert "[data]\n    path = /srv/pyctdb/data\n" in smb_conf
    assert lab3.in_node(2, "systemctl", "is-active", "ctdb.service",
                        check=False).strip() == "inactive"  # not in the play
    by_node = {pnn: ip for ip, pnn in hosts.items()}
    lab3.smb_round_trip(by_node[0], by_node[1], "two-nodes.bin")


@pytest.mark.netns
def test_a_third_node_joins_while_a_tunable_and_ctdb_conf_change(lab3: Lab) -> None:
    """The new node runs before the others reload the nodes file; the tunable changes
    live; ctdb.conf's change restarts the two running nodes one after the other."""
    lab3.inputs["pyctdb_nodes"] = [n.private_ip for n in lab3.sb.topo.nodes]
    lab3.inputs["pyctdb_tunables"] = {"MonitorInterval": 10}
    lab3.inputs["pyctdb_ctdb_conf"] = {"logging": {"log level": "INFO"}}
    doc = lab3.play()
    _ok(doc)
    steps = _steps(doc, ("Start the node manager, also at boot",
                         "Reload the nodes file on every node, through one that ran before",
                         "Reload the public addresses on every node, through one that ran before",
                         "Apply the changed tunables live", *ROLL_STEPS))
    assert [(name, hosts) for name, hosts, _, _ in steps] == [
        ("Start the node manager, also at boot", ["n0", "n1", "n2"]),
        # the new node runs before the others reload the nodes file; their public
        # addresses did not change, so no reloadips
        ("Reload the nodes file on every node, through one that ran before", ["n0"]),
        ("Apply the changed tunables live", ["n0", "n1"]),  # not the new node
        *[(name, ["n0"]) for name in ROLL_STEPS] * 2,
    ]
    # The two nodes that ran restarted one after the other, n0 first, each within its
    # own restart step; the new node was not restarted.
    restarts = [(start, end) for name, _, start, end in steps if name.startswith("Restart")]
    for pnn, (start, end) in enumerate(restarts):
        since = lab3.unit(pnn, "ActiveEnterTimestamp")
        assert start - 1 <= float(since.lstrip("@")) <= end + 1, (pnn, since, start, end)
    assert restarts[0][1] <= restarts[1][0]
    assert float(lab3.unit(2, "ActiveEnterTimestamp").lstrip("@")) < restarts[0][0]
    for pnn in range(3):
        assert "MonitorInterval         = 10" in lab3.in_node(pnn, "ctdb", "getvar",
                                                           "MonitorInterval")
    hosts = lab3.wait_all_ok_and_hosted(3)
    assert sorted(hosts.values()) == [0, 1, 2]
    # the new node serves the share too: through its address, read back through another
    by_node = {pnn: ip for ip, pnn in hosts.items()}
    lab3.smb_round_trip(by_node[2], by_node[0], "three-nodes.bin")


@pytest.mark.netns
def test_a_rolling_restart_moves_every_address_gracefully(lab3: Lab) -> None:
    """ctdb.conf changes: each node in turn is disabled (its addresses move to the
    others), restarted and enabled, while the client probe asks every address every
    10 ms; no address goes unanswered longer than a graceful move."""
    from ctdb.sandbox.lab import wait_for
    from ctdb.sandbox.probe import Probe

    ips = lab3.ips
    lab3.wait_all_ok_and_hosted(3)
    pids = lab3.main_pids()
    lab3.inputs["pyctdb_ctdb_conf"] = {"logging": {"log level": "NOTICE"}}

    def answered(probe: Probe) -> bool:
        last = {e["ip"]: e["node"] for e in probe.events}
        return sorted(last) == sorted(ips) and None not in last.values()

    def settled(probe: Probe) -> bool:
        """Every address answered by the node the cluster says hosts it."""
        hosts = lab3.hosts()
        last = {e["ip"]: e["node"] for e in probe.events}
        return last == {ip: f"node{hosts[ip]}" for ip in ips}

    with Probe(lab3.sb, ips, interval=0.01) as probe:
        wait_for("the probe's answers from every address", lambda: answered(probe),
                 timeout=20)
        started = probe.events[-1]["t"]
        doc = lab3.play()
        _ok(doc)
        lab3.wait_all_ok_and_hosted(3)
        # the last node's addresses may still be moving back to it
        wait_for("every address answered by its host after the restarts",
                 lambda: settled(probe), timeout=20, interval=0.2)
    steps = _steps(doc, ROLL_STEPS)
    assert [(name, hosts) for name, hosts, _, _ in steps] == [
        (name, ["n0"]) for _ in range(3) for name in ROLL_STEPS]
    # one node at a time, in inventory order, each within its own restart step
    restarts = [(start, end) for name, _, start, end in steps if name.startswith("Restart")]
    for pnn, (start, end) in enumerate(restarts):
        since = float(lab3.unit(pnn, "ActiveEnterTimestamp").lstrip("@"))
        assert start - 1 <= since <= end + 1, (pnn, since, start, end)
    assert all(a[1] <= b[0] for a, b in pairwise(restarts)), restarts
    new_pids = lab3.main_pids()
    assert all(new != old for new, old in zip(new_pids, pids, strict=True)), (pids, new_pids)
    assert "NOTICE" in lab3.in_node(1, "grep", "log level", "/etc/ctdb/ctdb.conf")
    outages = {ip: probe.outages(ip, after=started) for ip in ips}
    report = json.dumps(outages)
    for ip in ips:
        # every node was disabled in turn, so every address moved at least once ...
        served = {e["node"] for e in probe.events if e["ip"] == ip}
        assert len(served - {None}) >= 2, (ip, served, report)
        # ... and never went unanswered for longer than a graceful move
        for down, back, old, new in outages[ip]:
            assert back - down < OUTAGE_BOUND, (ip, down, back, old, new, report)
    # every address served at the end (settled above), by the node that hosts it
    assert None not in {e["ip"]: e["node"] for e in probe.events}.values()
    lab3.smb_round_trip(ips[0], ips[-1], "after-the-restarts.bin")


@pytest.mark.netns
def test_a_new_public_address_is_added_live(lab3: Lab) -> None:
    """public_addresses changes: ``ctdb reloadips`` applies it, no node restarts, and the
    new address is hosted and serves the share."""
    new = lab3.sb.topo.public_ips[3]
    assert new not in lab3.hosts()
    pids = lab3.main_pids()
    lab3.inputs["pyctdb_public_addresses"] = [
        *lab3.inputs["pyctdb_public_addresses"], {"address": f"{new}/24", "interfaces": ["eth1"]}]
    doc = lab3.play()
    _ok(doc)
    reload = _task_results(
        doc, "Reload the public addresses on every node, through one that ran before")
    assert [bool(r.get("changed")) for r in reload] == [True], reload
    assert next(r for r in reload if not r.get("skipped"))["cmd"][-1] == "reloadips"
    assert _steps(doc, ROLL_STEPS) == []
    assert lab3.main_pids() == pids  # no node restarted
    for pnn in range(3):
        assert f"{new}/24 eth1\n" in lab3.in_node(pnn, "cat", "/etc/ctdb/public_addresses")
    hosts = lab3.wait_all_ok_and_hosted(3)
    assert hosts[new] in (0, 1, 2)
    assert lab3.main_pids() == pids
    lab3.smb_round_trip(new, lab3.ips[0], "new-address.bin")


@pytest.mark.netns
def test_the_same_inputs_again_change_nothing(lab3: Lab) -> None:
    doc = lab3.play()
    _ok(doc)
    assert _changed(doc) == {"n0": 0, "n1": 0, "n2": 0}


@pytest.mark.netns
def test_check_mode_shows_a_change_and_does_nothing(lab3: Lab) -> None:
    before = [lab3.in_node(pnn, "cat", "/etc/ctdb/ctdb.tunables") for pnn in range(3)]
    inputs = lab3.inputs
    lab3.inputs = {**inputs, "pyctdb_tunables": {"MonitorInterval": 12}}
    try:
        doc = lab3.play("--check", "--diff")
    finally:
        lab3.inputs = inputs
    _ok(doc)
    diffs = [res["diff"] for res in _task_results(
        doc, "Write ctdb.tunables, checked by ctdb-config")]
    assert len(diffs) == 3
    assert all("+MonitorInterval=12\n" in _unified(d[0]) for d in diffs)
    assert [lab3.in_node(pnn, "cat", "/etc/ctdb/ctdb.tunables") for pnn in range(3)] == before
    assert "MonitorInterval         = 10" in lab3.in_node(1, "ctdb", "getvar", "MonitorInterval")
    assert lab3.in_node(0, "ctdb", "nodestatus", "all").count(" OK") == 3
