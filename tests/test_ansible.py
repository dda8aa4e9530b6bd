"""The Ansible role (ansible/roles/pyctdb): lint, input checks, rendering.

The role runs under Debian's ansible-playbook (ansible-core 2.14, /usr/bin/python3); its
filter plugin finds pyctdb's netfs and ctdb.config in this source tree.  Playbooks run
against local "nodes" (connection local), each with its own CTDB_BASE under a temporary
directory, through the role's ``configure`` entry point (render, check, write: no
package, no service), and report through the JSON callback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
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

LAB = f"an{os.getpid() % 100000}"
NODE_ENV = ["env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C.UTF-8"]


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


def _lab_playbook(sb: Any, tmp: Path, inventory: dict[str, Any], *args: str) -> dict[str, Any]:
    (tmp / "site.yml").write_text(json.dumps([{
        "name": "Deploy pyctdb", "hosts": "cluster", "roles": ["pyctdb"]}]))
    (tmp / "inventory.yml").write_text(json.dumps(inventory))
    env = {**_env(tmp), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "ANSIBLE_PIPELINING": "1"}
    result = subprocess.run(
        sb.client_argv([ANSIBLE_PLAYBOOK, "-i", str(tmp / "inventory.yml"),
                        str(tmp / "site.yml"), *args]),
        capture_output=True, text=True, env=env, cwd=tmp, timeout=900, check=False)
    try:
        return json.loads(result.stdout)  # type: ignore[no-any-return]
    except json.JSONDecodeError:
        pytest.fail(f"ansible-playbook gave no JSON (rc {result.returncode}):\n"
                    f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


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


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@pytest.mark.netns
def test_deploy_grow_and_change_a_three_node_lab(tmp_path: Path) -> None:
    """The .deb, two nodes, then a third joins while a tunable and ctdb.conf change.

    The controller is in the lab's client namespace and reaches each node's sshd on the
    node's fixed public address; the nodes are clean clones of this machine.
    """
    from ctdb.sandbox.lab import Options, Sandbox
    from tests.leftovers import leftovers

    build = subprocess.run([str(ROOT / "packaging" / "build.sh"), str(tmp_path / "pkg")],
                           capture_output=True, text=True, timeout=300, check=False,
                           env={**os.environ, "PYCTDB_PACKAGES": "deb"})
    assert build.returncode == 0, build.stderr[-3000:]
    (deb,) = (tmp_path / "pkg").glob("pyctdb_*_all.deb")
    with Sandbox(Options(name=LAB, nodes=3, backend="nspawn", public_ips=3,
                         pyctdb_unit=False)) as sb:
        _start_sshd(sb, tmp_path)
        nodes = sb.topo.nodes
        inputs: dict[str, Any] = {
            "ansible_user": "root",
            "ansible_python_interpreter": HOST_PYTHON,
            "ansible_ssh_private_key_file": str(tmp_path / "id"),
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
                                       " -o ControlMaster=auto -o ControlPersist=5s"
                                       # a short path: a unix socket's is at most 107 bytes
                                       f" -o ControlPath={sb.topo.root}/cp-%C",
            "pyctdb_nodes": [n.private_ip for n in nodes[:2]],
            "pyctdb_public_addresses": [{"address": f"{ip}/24", "interfaces": ["eth1"]}
                                        for ip in sb.topo.public_ips],
            "pyctdb_tunables": {"MonitorInterval": 15},
            "pyctdb_package_source": "file",
            "pyctdb_package_file": str(deb),
        }
        inventory = {"cluster": {"hosts": {f"n{n.pnn}": {"ansible_host": n.public_ip}
                                           for n in nodes}, "vars": inputs}}

        def in_node(pnn: int, *argv: str, check: bool = True) -> str:
            return str(sb.exec(pnn, [*NODE_ENV, *argv], check=check, timeout=60).stdout)

        # Two nodes: installed, configured, started, OK.
        doc = _lab_playbook(sb, tmp_path, inventory, "--limit", "n0,n1")
        _ok(doc)
        assert "Number of nodes:2" in in_node(0, "ctdb", "nodestatus", "all")
        assert in_node(1, "systemctl", "is-enabled", "ctdb.service").strip() == "enabled"
        assert in_node(1, "stat", "-c", "%a", "/etc/ctdb/cluster.key").strip() == "600"

        # A third node joins, a tunable changes (live) and ctdb.conf changes (restarts).
        inputs["pyctdb_nodes"] = [n.private_ip for n in nodes]
        inputs["pyctdb_tunables"] = {"MonitorInterval": 10}
        inputs["pyctdb_ctdb_conf"] = {"logging": {"log level": "INFO"}}
        doc = _lab_playbook(sb, tmp_path, inventory)
        _ok(doc)
        steps = _steps(doc, ("Start the node manager, also at boot",
                             "Reload the nodes file on every node, through one that ran before",
                             "Apply the changed tunables live",
                             "Disable the node, so its public addresses move to the others first",
                             "Restart the node manager", "Enable the node again"))
        assert [(name, hosts) for name, hosts, _, _ in steps] == [
            ("Start the node manager, also at boot", ["n0", "n1", "n2"]),
            # the new node runs before the others reload the nodes file
            ("Reload the nodes file on every node, through one that ran before", ["n0"]),
            ("Apply the changed tunables live", ["n0", "n1"]),  # not the new node
            *[("Disable the node, so its public addresses move to the others first", ["n0"]),
              ("Restart the node manager", ["n0"]), ("Enable the node again", ["n0"])] * 2,
        ]
        # The two nodes that ran restarted one after the other, n0 first, each within its
        # own restart step; the new node was not restarted.
        restarts = [(start, end) for name, _, start, end in steps if name.startswith("Restart")]
        for pnn, (start, end) in enumerate(restarts):
            since = in_node(pnn, "systemctl", "show", "--timestamp=unix", "-p",
                            "ActiveEnterTimestamp", "--value", "ctdb.service").strip()
            assert start - 1 <= float(since.lstrip("@")) <= end + 1, (pnn, since, start, end)
        assert restarts[0][1] <= restarts[1][0]
        since = in_node(2, "systemctl", "show", "--timestamp=unix", "-p",
                        "ActiveEnterTimestamp", "--value", "ctdb.service").strip()
        assert float(since.lstrip("@")) < restarts[0][0]
        for pnn in range(3):
            assert "MonitorInterval         = 10" in in_node(pnn, "ctdb", "getvar",
                                                              "MonitorInterval")
        status = in_node(2, "ctdb", "nodestatus", "all")
        assert status.count(" OK") == 3, status
        hosted = in_node(2, "ctdb", "ip", "all")
        assert sorted(line.split()[1] for line in hosted.splitlines()[1:]) == ["0", "1", "2"]

        # The same inputs again: nothing changes.
        doc = _lab_playbook(sb, tmp_path, inventory)
        _ok(doc)
        assert _changed(doc) == {"n0": 0, "n1": 0, "n2": 0}

        # Check mode: a change is shown with its diff, and nothing is done.
        before = [in_node(pnn, "cat", "/etc/ctdb/ctdb.tunables") for pnn in range(3)]
        inputs["pyctdb_tunables"] = {"MonitorInterval": 12}
        doc = _lab_playbook(sb, tmp_path, inventory, "--check", "--diff")
        _ok(doc)
        diffs = [res["diff"] for task in doc["plays"][0]["tasks"]
                 if task["task"]["name"].endswith("Write ctdb.tunables, checked by ctdb-config")
                 for res in task["hosts"].values()]
        assert len(diffs) == 3
        assert all("+MonitorInterval=12\n" in _unified(d[0]) for d in diffs)
        assert [in_node(pnn, "cat", "/etc/ctdb/ctdb.tunables") for pnn in range(3)] == before
        assert "MonitorInterval         = 10" in in_node(1, "ctdb", "getvar", "MonitorInterval")
        assert in_node(0, "ctdb", "nodestatus", "all").count(" OK") == 3
    assert leftovers(LAB) == []
