"""Filters of the pyctdb role, run on the controller.

smb.conf and ganesha.conf are rendered by pyctdb's own ``netfs.render`` with the
templates it ships (``netfs/templates/*.j2``), so the role and ``netfs-render`` give
the same bytes for the same share list; the role keeps no copy of those templates.
The share list is checked by ``netfs.shares`` and the rendered CTDB files by
``ctdb.config``, so a mistake is reported with pyctdb's own one-line message before
any node is touched.

pyctdb must be importable by the controller's Python (the one running
ansible-playbook): installed there (the .deb or ``pip install pyctdb``), on
``PYTHONPATH``, or, when the role is used from a pyctdb source tree, found in that
tree (``ansible/roles/pyctdb`` -> the tree's root).
"""

from __future__ import annotations

import importlib
import secrets
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError

ROLE_SOURCE_TREE = Path(__file__).resolve().parents[4]
KEY_ROTATIONS = ("none", "begin", "finish")


def _pyctdb(module: str) -> Any:
    """Import *module* of pyctdb (netfs.render, ctdb.config ...), or explain what is missing."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if not (ROLE_SOURCE_TREE / "netfs" / "render.py").is_file():
            raise AnsibleFilterError(
                f"the pyctdb role needs pyctdb on the controller to render and check its files,"
                f" but {module} cannot be imported by {sys.executable}: install pyctdb there"
                " or add its source tree to PYTHONPATH") from None
    if str(ROLE_SOURCE_TREE) not in sys.path:
        sys.path.append(str(ROLE_SOURCE_TREE))
    return importlib.import_module(module)


def _plain(value: Any) -> Any:
    """Ansible's YAML and template types as the plain Python types netfs checks for."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [_plain(v) for v in value]
    return value


def _shares(shares: Any) -> Any:
    netfs_shares = _pyctdb("netfs.shares")
    errors = _pyctdb("ctdb.errors")
    try:
        return netfs_shares.shares_from_data(_plain(shares), "pyctdb_shares")
    except errors.ConfigError as exc:
        raise AnsibleFilterError(str(exc)) from None


def shares_error(shares: Any) -> str:
    """'' when netfs accepts the share list, else its one-line reason."""
    try:
        _shares(shares)
    except AnsibleFilterError as exc:
        return str(exc.message)
    return ""


def smb_conf(shares: Any, smb_globals: Mapping[str, Any] | None = None,
             header: str | None = None) -> str:
    """smb.conf as ``netfs.render.render_smb`` writes it."""
    render = _pyctdb("netfs.render")
    errors = _pyctdb("ctdb.errors")
    try:
        return str(render.render_smb(_shares(shares), _plain(smb_globals or {}), header=header))
    except errors.ConfigError as exc:
        raise AnsibleFilterError(f"pyctdb_smb_globals: {exc}") from None


def ganesha_conf(shares: Any, ganesha: Mapping[str, Any], header: str | None = None) -> str:
    """ganesha.conf as ``netfs.render.render_ganesha`` writes it, structurally checked."""
    render = _pyctdb("netfs.render")
    errors = _pyctdb("ctdb.errors")
    options = _plain(ganesha)
    try:
        text = render.render_ganesha(
            _shares(shares), options["recovery_root"],
            grace_period=int(options.get("grace_period", 90)),
            lease_lifetime=int(options.get("lease_lifetime", 60)),
            nfs_port=int(options.get("nfs_port", 2049)),
            core=options.get("core") or {}, nfsv4=options.get("nfsv4") or {}, header=header)
        render.validate_ganesha(text, "ganesha.conf")
    except errors.ConfigError as exc:
        raise AnsibleFilterError(f"pyctdb_ganesha: {exc}") from None
    return str(text)


def config_errors(files: Mapping[str, str], base: str = "/etc/ctdb") -> list[str]:
    """What pyctdb's own parsers refuse in the rendered CTDB files (empty: all valid).

    The same checks ``ctdb-config check-file`` makes on the nodes, made once here so a
    bad input stops the play before any node is changed.
    """
    config = _pyctdb("ctdb.config")
    errors = _pyctdb("ctdb.errors")
    checks = {
        "ctdb.conf": lambda text, name: config.parse_conf(text, name, base=Path(base)),
        "nodes": config.parse_nodes,
        "public_addresses": config.parse_public_addresses,
        "ctdb.tunables": config.parse_tunables,
        "script.options": lambda text, name: config.parse_script_options(
            text, name, env={"CTDB_BASE": base}),
    }
    problems = []
    for name, check in checks.items():
        if name in files:
            try:
                check(str(files[name]), name)
            except errors.ConfigError as exc:
                problems.append(str(exc))
    return problems


def tunable_updates(old_text: str, new_text: str) -> dict[str, int]:
    """The tunables whose value changes from the old ctdb.tunables to the new one.

    A tunable the new file no longer sets goes back to its default, as it would after a
    restart.  An unreadable old file counts as all defaults.
    """
    config = _pyctdb("ctdb.config")
    errors = _pyctdb("ctdb.errors")
    new = config.parse_tunables(str(new_text))
    try:
        old = config.parse_tunables(str(old_text or ""))
    except errors.ConfigError:
        old = config.Tunables()
    return {name: value for name, value in new.items() if old[name] != value}


def _key_lines(text: str) -> list[str]:
    lines = (line.strip() for line in str(text or "").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def cluster_keys(current_files: Sequence[str], key: str = "", rotation: str = "none") -> list[str]:
    """The lines of the cluster key file every node gets, preferred key first.

    *current_files* are the key files the nodes hold now (empty for none).  While a
    rotation is under way some nodes may hold one key more than others: the longest
    list that contains every other one is the cluster's current state.  *key* is a key
    the inventory gives (else keys are generated here, once); *rotation* is
    ``begin`` (add a new key in front of the current one: both stay valid),
    ``finish`` (keep only the preferred key) or ``none`` (keep what the nodes hold).
    """
    if rotation not in KEY_ROTATIONS:
        raise AnsibleFilterError(f"pyctdb_cluster_key_rotation: {rotation!r} is not one of"
                                 f" {', '.join(KEY_ROTATIONS)}")
    held = sorted({tuple(_key_lines(text)) for text in current_files} - {()}, key=len)
    current = list(held[-1]) if held else []
    for other in held:
        if not set(other) <= set(current):
            raise AnsibleFilterError(
                "the nodes hold different cluster keys that no rotation explains: give the"
                " key to use in pyctdb_cluster_key and rotate to it, or repair the key files")
    key = str(key or "")
    if not current:
        return [key or secrets.token_hex(32)]
    if rotation == "begin":
        if len(current) > 1:
            return current  # already begun: the new key is in front
        if key == current[0]:
            raise AnsibleFilterError("pyctdb_cluster_key_rotation=begin: pyctdb_cluster_key is"
                                     " the current key; give a new one or leave it unset")
        return [key or secrets.token_hex(32), *current]
    if rotation == "finish":
        if key and key != current[0]:
            raise AnsibleFilterError("pyctdb_cluster_key_rotation=finish: pyctdb_cluster_key"
                                     " is not the key the rotation began with")
        return current[:1]
    if key and key not in current:
        raise AnsibleFilterError(
            "pyctdb_cluster_key is not a key the nodes hold: changing it at once would split"
            " the cluster; rotate with pyctdb_cluster_key_rotation=begin, then finish")
    return current


class FilterModule:
    """pyctdb's rendering and checking filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "pyctdb_shares_error": shares_error,
            "pyctdb_smb_conf": smb_conf,
            "pyctdb_ganesha_conf": ganesha_conf,
            "pyctdb_config_errors": config_errors,
            "pyctdb_tunable_updates": tunable_updates,
            "pyctdb_cluster_keys": cluster_keys,
        }
