"""The share list, smb.conf and ganesha.conf rendering, and their checks.

Share-list errors come from a table (input, the one-line error expected); smb.conf is
checked by the real testparm, a bad parameter included; ganesha.conf by our structural
check, on rendered output and on a table of broken files.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ctdb.errors import ConfigError
from netfs import render
from netfs.cli import main as netfs_render
from netfs.shares import (
    Access,
    NfsOptions,
    Share,
    Squash,
    load_shares,
    parse_shares,
    shares_from_data,
)

TOML = """
[[share]]
name = "data"
path = "/srv/pyctdb/data"
comment = "Team data"
valid_users = ["alice", "@staff"]

[share.nfs]
squash = "no_root_squash"
clients = ["198.18.2.0/24", "2001:2::/48"]
export_id = 7

[[share]]
name = "pub"
path = "/srv/pyctdb/pub/"
protocols = ["smb"]
guest_ok = true
read_only = true
browseable = false

[[share]]
name = "scratch"
path = "/srv/pyctdb/scratch"
protocols = ["nfs"]
"""


def test_toml_loads_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "shares.toml"
    path.write_text(TOML)
    data, pub, scratch = load_shares(path)
    assert data == Share(
        name="data", path="/srv/pyctdb/data", protocols=frozenset({"smb", "nfs"}),
        comment="Team data", valid_users=("alice", "@staff"),
        nfs=NfsOptions(export_id=7, pseudo="/data", access=Access.RW,
                       squash=Squash.NO_ROOT_SQUASH, clients=("198.18.2.0/24", "2001:2::/48")))
    assert pub.path == "/srv/pyctdb/pub"  # trailing slash dropped
    assert (pub.smb, pub.exported, pub.nfs, pub.read_only, pub.browseable, pub.guest_ok) == \
        (True, False, None, True, False, True)
    assert not scratch.smb
    # The first free export id: 7 is taken by "data".
    assert scratch.nfs == NfsOptions(export_id=1, pseudo="/scratch")


def test_dicts_give_the_same_shares_as_toml() -> None:
    """The Ansible role passes the same structure as a list of dicts."""
    import tomllib

    as_dicts = tomllib.loads(TOML)["share"]
    assert shares_from_data(as_dicts, "role") == parse_shares(TOML)


def test_comment_may_hold_what_ganesha_could_not() -> None:
    """The comment goes to smb.conf only."""
    (share,) = shares_from_data([{"name": "d", "path": "/d", "comment": 'a; "b" {c}'}])
    assert share.comment == 'a; "b" {c}'


def test_read_only_share_exports_read_only() -> None:
    (share,) = shares_from_data([{"name": "ro", "path": "/x", "read_only": True}])
    assert share.nfs is not None
    assert share.nfs.access is Access.RO


def test_export_ids_fill_gaps_in_order() -> None:
    shares = shares_from_data([
        {"name": "a", "path": "/a"},
        {"name": "b", "path": "/b", "nfs": {"export_id": 1}},
        {"name": "c", "path": "/c"},
        {"name": "d", "path": "/d", "protocols": ["smb"]},
        {"name": "e", "path": "/e", "nfs": {"export_id": 3}},
    ])
    assert [s.nfs.export_id if s.nfs else None for s in shares] == [2, 1, 4, None, 3]


def share(**fields: Any) -> dict[str, Any]:
    return {"name": "data", "path": "/srv/data", **fields}


BAD: list[tuple[str, Any, str]] = [
    ("not a list", {"name": "x"}, "src: the share list must be a list of tables, not a table"),
    ("not a table", ["data"], "src: share #1: must be a table, not a string"),
    ("no name", [{"path": "/x"}], "src: share #1: name: missing (required)"),
    ("no path", [{"name": "data"}], "src: share 'data': path: missing (required)"),
    ("name type", [{"name": 3, "path": "/x"}], "src: share #1: name: must be a string, not a"
     " number"),
    ("bad name", [share(name="da ta")], "src: share 'da ta': name: 'da ta': 1-80 letters,"
     " digits, '_', '.', '-' or '$', starting with a letter or digit"),
    ("reserved", [share(name="Global")], "src: share 'Global': name: 'Global' is reserved in"
     " smb.conf"),
    ("duplicate", [share(), share(name="DATA", path="/other")],
     "src: share 'DATA': name: duplicate share name (also 'data')"),
    ("relative", [share(path="srv/data")], "src: share 'data': path: 'srv/data' is not an"
     " absolute path"),
    ("dotdot", [share(path="/srv/../etc")], "src: share 'data': path: '/srv/../etc' is not a"
     " normalised path (no '.', '..', '//')"),
    ("percent", [share(path="/home/%U")], "src: share 'data': path: '/home/%U': no '%' or"
     " surrounding spaces in a path"),
    ("newline", [share(comment="a\n[global]")], "src: share 'data': comment: 'a\\n[global]'"
     " contains a line break"),
    ("quote in path", [share(path='/srv/"x')], "src: share 'data': path: '/srv/\"x' contains"
     " a line break, quote, brace or ';'"),
    ("unknown key", [share(writable=True)], "src: share 'data': writable: unknown key (known:"
     " name, path, protocols, read_only, comment, browseable, guest_ok, valid_users, nfs)"),
    ("unknown protocol", [share(protocols=["smb", "afp"])], "src: share 'data': protocols:"
     " unknown protocol 'afp' (known: nfs, smb)"),
    ("no protocol", [share(protocols=[])], "src: share 'data': protocols: must name at least"
     " one of smb, nfs"),
    ("protocols string", [share(protocols="smb")], "src: share 'data': protocols: must be a"
     " list of strings, not a string"),
    ("bool", [share(read_only="yes")], "src: share 'data': read_only: must be true or false,"
     " not 'yes'"),
    ("user", [share(valid_users=["a,b"])], "src: share 'data': valid_users: 'a,b' is not a"
     " user or @group name"),
    ("nfs without nfs", [share(protocols=["smb"], nfs={"squash": "all_squash"})],
     "src: share 'data': nfs: NFS options for a share whose protocols lack nfs"),
    ("nfs unknown key", [share(nfs={"sqash": "all_squash"})], "src: share 'data': nfs.sqash:"
     " unknown key (known: access_type, squash, clients, pseudo, export_id)"),
    ("squash", [share(nfs={"squash": "root"})], "src: share 'data': nfs.squash: 'root' is not"
     " one of root_squash, no_root_squash, all_squash"),
    ("access", [share(nfs={"access_type": "MDONLY"})], "src: share 'data': nfs.access_type:"
     " 'MDONLY' is not RW or RO"),
    ("access vs read_only", [share(read_only=True, nfs={"access_type": "rw"})],
     "src: share 'data': nfs.access_type: RW contradicts read_only = true"),
    ("client", [share(nfs={"clients": ["198.18.0.0/15;x"]})], "src: share 'data': nfs.clients:"
     " '198.18.0.0/15;x' is not an address, network or host name pattern"),
    ("client pattern", [share(nfs={"clients": ["a b"]})], "src: share 'data': nfs.clients:"
     " 'a b' is not an address, network or host name pattern"),
    ("pseudo root", [share(nfs={"pseudo": "/"})], "src: share 'data': nfs.pseudo: '/' is"
     " Ganesha's pseudo root: pick a path below it"),
    ("export id range", [share(nfs={"export_id": 0})], "src: share 'data': nfs.export_id: 0 is"
     " not a number from 1 to 65535"),
    ("export id bool", [share(nfs={"export_id": True})], "src: share 'data': nfs.export_id:"
     " True is not a number from 1 to 65535"),
    ("export ids collide", [share(nfs={"export_id": 5}),
                            share(name="b", path="/b", nfs={"export_id": 5})],
     "src: share 'b': nfs.export_id: 5 is also share 'data''s export id"),
    ("pseudo collide", [share(nfs={"pseudo": "/x"}), share(name="b", path="/b",
                                                           nfs={"pseudo": "/x"})],
     "src: share 'b': nfs.pseudo: /x is also share 'data''s pseudo path"),
]


@pytest.mark.parametrize(("data", "message"), [(d, m) for _, d, m in BAD],
                         ids=[i for i, _, _ in BAD])
def test_bad_share_lists_are_refused_in_one_line(data: Any, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        shares_from_data(data, "src")
    assert str(err.value) == message
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("text", "message"), [
    ("[[share]\n", "shares.toml: not valid TOML: "),
    ('shares = []\n', "shares.toml: shares: unknown key (known: share)"),
    ('share = "x"\n', "shares.toml: share: must be an array of tables ([[share]])"),
    ('[[share]]\nname = "d"\npath = "/d"\n[share.nfs]\nexport_id = 70000\n',
     "shares.toml: share 'd': nfs.export_id: 70000 is not a number from 1 to 65535"),
])
def test_bad_toml_names_the_file(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace(
            ")", r"\)").replace("[", r"\[").replace("]", r"\]")):
        parse_shares(text, "shares.toml")


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^.*nope.toml: cannot read the share list: No such"):
        load_shares(tmp_path / "nope.toml")


# -- smb.conf ----------------------------------------------------------------------------
def test_smb_conf_renders_globals_and_smb_shares() -> None:
    text = render.render_smb(parse_shares(TOML), {"workgroup": "EXAMPLE",
                                                  "Clustering": "yes"})
    lines = text.splitlines()
    assert lines[0] == render.GENERATED
    assert "    clustering = yes" in lines  # a passed parameter overrides the default
    assert "    clustering = no" not in lines
    assert "    workgroup = EXAMPLE" in lines
    assert "[data]" in lines
    assert "[pub]" in lines
    assert "[scratch]" not in lines  # NFS only
    data = text.split("[data]\n")[1].split("\n\n")[0].splitlines()
    assert data == ["    path = /srv/pyctdb/data", "    comment = Team data",
                    "    read only = no", "    browseable = yes",
                    "    valid users = alice @staff"]
    pub = text.split("[pub]\n")[1].splitlines()
    assert pub == ["    path = /srv/pyctdb/pub", "    read only = yes", "    browseable = no",
                   "    guest ok = yes"]


def test_smb_default_globals() -> None:
    text = render.render_smb([])
    assert "[global]\n    clustering = no\n" in text
    assert "    disable netbios = yes\n" in text


@pytest.mark.parametrize(("header", "first"), [
    (None, [render.GENERATED]),
    ("#\n# Ansible managed\n#", ["#", "# Ansible managed", "#"]),
    ("Managed by Ansible\n", ["# Managed by Ansible"]),
])
def test_header_lines_are_comments(header: str | None, first: list[str]) -> None:
    for text in (render.render_smb([], header=header),
                 render.render_ganesha([], "/r", header=header)):
        assert text.splitlines()[:len(first)] == first


@pytest.mark.parametrize(("globals_", "message"), [
    ({"log level": "1\n[evil]"}, "smb.conf global 'log level': value '1\\n[evil]' must be"
     " one line of text"),
    ({"[global": "x"}, "smb.conf global '[global': not a parameter name"),
])
def test_bad_globals_are_refused(globals_: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        render.render_smb([], globals_)
    assert str(err.value) == message


def test_testparm_accepts_rendered_smb_conf() -> None:
    render.validate_smb(render.render_smb(parse_shares(TOML), {"workgroup": "EXAMPLE",
                                                                "map to guest": "Bad User"}))


def test_testparm_refuses_an_unknown_parameter() -> None:
    text = render.render_smb(parse_shares(TOML), {"clustring": "yes", "log level": "1"})
    with pytest.raises(ConfigError) as err:
        render.validate_smb(text, "node0/smb.conf")
    assert str(err.value) == "node0/smb.conf: unknown parameter 'clustring'"


def test_testparm_refuses_a_bad_value() -> None:
    with pytest.raises(ConfigError, match=r"^smb.conf: testparm refuses it: .*not boolean"):
        render.validate_smb(render.render_smb([], {"clustering": "maybe"}))


# -- ganesha.conf ------------------------------------------------------------------------
def test_ganesha_conf_renders_nfs_shares() -> None:
    text = render.render_ganesha(parse_shares(TOML), "/srv/pyctdb/.ganesha", grace_period=20,
                                 lease_lifetime=10, core={"Bind_addr": "198.18.2.1"})
    render.validate_ganesha(text)
    blocks = {b.name: b for b in render.parse_ganesha(text) if b.name != "EXPORT"}
    core, v4 = blocks["NFS_CORE_PARAM"], blocks["NFSV4"]
    assert core.get("Protocols") == ["4"]
    assert core.get("Bind_addr") == ["198.18.2.1"]
    assert v4.get("Graceless") == ["false"]
    assert v4.get("RecoveryBackend") == ["fs"]
    assert v4.get("RecoveryRoot") == ["/srv/pyctdb/.ganesha"]
    assert (v4.get("Grace_Period"), v4.get("Lease_Lifetime")) == (["20"], ["10"])
    exports = [b for b in render.parse_ganesha(text) if b.name == "EXPORT"]
    assert [(e.get("Export_Id"), e.get("Path"), e.get("Pseudo")) for e in exports] == [
        (["7"], ["/srv/pyctdb/data"], ["/data"]),
        (["1"], ["/srv/pyctdb/scratch"], ["/scratch"])]
    data, scratch = exports
    # With a client list the export itself grants nothing; its CLIENT block does.
    assert data.get("Access_Type") == ["None"]
    (client,) = [b for b in data.blocks if b.name == "CLIENT"]
    assert client.raw("Clients") == ["198.18.2.0/24", "2001:2::/48"]
    assert (client.get("Access_Type"), client.get("Squash")) == (["RW"], ["no_root_squash"])
    assert (scratch.get("Access_Type"), scratch.get("Squash")) == (["RW"], ["root_squash"])
    assert [b.name for b in scratch.blocks] == ["FSAL"]
    assert scratch.blocks[0].get("Name") == ["VFS"]
    assert scratch.get("Protocols") == ["4"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"recovery_root": "relative"}, "ganesha.conf RecoveryRoot 'relative': not an absolute"
     " path"),
    ({"lease_lifetime": 0}, "ganesha.conf Lease_Lifetime 0: must be 1 to 120"),
    ({"grace_period": 30, "lease_lifetime": 60}, "ganesha.conf Grace_Period 30: must be from"
     " Lease_Lifetime (60) to 180"),
    ({"core": {"Protocols": "3"}}, "ganesha.conf NFS_CORE_PARAM Protocols: set by the"
     " renderer itself"),
    ({"nfsv4": {"Minor_Versions": "1; }"}}, "ganesha.conf NFSV4 Minor_Versions: value"
     " '1; }' must be one token without quotes, braces, ';' or '#'"),
    ({"core": {"bad key": "1"}}, "ganesha.conf NFS_CORE_PARAM 'bad key': not a parameter"
     " name"),
])
def test_bad_ganesha_parameters_are_refused(kwargs: dict[str, Any], message: str) -> None:
    kwargs.setdefault("recovery_root", "/r")
    with pytest.raises(ConfigError) as err:
        render.render_ganesha([], **kwargs)
    assert str(err.value) == message


EXPORT = ('EXPORT {{ Export_Id = {id}; Path = "/p{id}"; Pseudo = "/p{id}";'
          ' FSAL {{ Name = VFS; }} }}\n')
BROKEN_GANESHA: list[tuple[str, str, str]] = [
    ("unclosed", "NFSV4 {\n Graceless = false;\n", "g.conf:1: block NFSV4 is never closed"),
    ("stray brace", "NFSV4 { }\n}\n", "g.conf:2: '}' closes no block"),
    ("no semicolon", "NFSV4 {\n Graceless = false\n}\n",
     "g.conf:3: Graceless = ... has no ';' before '}'"),
    ("no semicolon at end", "NFSV4 { Graceless = false", "g.conf:1: Graceless = ... has no ';'"),
    ("unknown block", "NFSv4 { }\nNFS_CORE { }\n", "g.conf:2: unknown block NFS_CORE"),
    ("twice", "LOG { }\n\nlog { }\n", "g.conf:3: a second log block (first at line 1)"),
    ("top-level param", "Graceless = true;\n", "g.conf:1: Graceless = ... outside any block"),
    ("bare word", "NFSV4 { Graceless }\n", "g.conf:1: 'Graceless' is followed by neither '='"
     " nor '{'"),
    ("no id", 'EXPORT { Path = /a; Pseudo = /a; FSAL { Name = VFS; } }\n',
     "g.conf:1: EXPORT has no Export_Id"),
    ("no pseudo", 'EXPORT { Export_Id = 1; Path = /a; FSAL { Name = VFS; } }\n',
     "g.conf:1: EXPORT has no Pseudo"),
    ("no fsal", 'EXPORT { Export_Id = 1; Path = /a; Pseudo = /a; }\n',
     "g.conf:1: EXPORT (Export_Id 1) has no FSAL block"),
    ("fsal no name", 'EXPORT { Export_Id = 1; Path = /a; Pseudo = /a;\nFSAL { } }\n',
     "g.conf:2: FSAL block has no Name"),
    ("id range", EXPORT.format(id=70000), "g.conf:1: EXPORT: Export_Id '70000' is not 0 to"
     " 65535"),
    ("id collide", EXPORT.format(id=2) + EXPORT.format(id=2).replace("/p2", "/q"),
     "g.conf:2: EXPORT: Export_Id 2 is also the export at line 1"),
    ("pseudo collide", EXPORT.format(id=2) + EXPORT.format(id=3).replace("Pseudo = \"/p3",
                                                                          "Pseudo = \"/p2"),
     "g.conf:2: EXPORT: Pseudo /p2 is also the export at line 1"),
    ("quoted client", EXPORT.format(id=2).replace("} }", '} CLIENT { Clients = "*"; } }'),
     'g.conf:1: Clients: "*" must not be quoted'),
    ("unterminated string", 'NFSV4 { RecoveryRoot = "/x;\n}\n',
     "g.conf:1: unterminated quoted string"),
]


@pytest.mark.parametrize(("text", "message"), [(t, m) for _, t, m in BROKEN_GANESHA],
                         ids=[i for i, _, _ in BROKEN_GANESHA])
def test_ganesha_structural_check_refuses(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        render.validate_ganesha(text, "g.conf")
    assert str(err.value) == message


def test_ganesha_structural_check_accepts_ganesha_syntax() -> None:
    render.validate_ganesha(
        "# comment { not a block\n%include \"/etc/ganesha/more.conf\"\n"
        "nfs_core_param { Protocols = 3, 4; }  # trailing comment\n"
        "EXPORT_DEFAULTS { SecType = sys; }\n" + EXPORT.format(id="0x10") + EXPORT.format(id=17)
        .replace("/p17", "/q") + "LOG { COMPONENTS { ALL = EVENT; } }\n")


# -- netfs-render ------------------------------------------------------------------------
def test_cli_renders_checks_and_writes(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    shares = tmp_path / "shares.toml"
    shares.write_text(TOML)
    out = tmp_path / "smb.conf"
    assert netfs_render(["smb", "--shares", str(shares), "--set", "workgroup = EX", "-o",
                         str(out), "--check"]) == 0
    assert "    workgroup = EX\n" in out.read_text()
    assert oct(out.stat().st_mode & 0o777) == "0o644"
    assert netfs_render(["ganesha", "--shares", str(shares), "--set", "recovery_root=/r",
                         "--set", "grace_period=120", "--set", "NFSV4.Minor_Versions=1,2",
                         "--check"]) == 0
    text = capsys.readouterr().out
    assert "    Grace_Period = 120;\n" in text
    assert "    Minor_Versions = 1,2;\n" in text
    render.validate_ganesha(text)


@pytest.mark.parametrize(("argv", "message"), [
    (["smb", "--set", "clustring=yes", "--check"], "netfs-render: OUT: unknown parameter"
     " 'clustring'"),
    (["ganesha"], "netfs-render: ganesha needs --set recovery_root=PATH, a directory on"
     " storage every node shares"),
    (["ganesha", "--set", "recovery_root=/r", "--set", "graceperiod=3"],
     "netfs-render: --set graceperiod: unknown for ganesha (recovery_root, grace_period,"
     " lease_lifetime, nfs_port, NFS_CORE_PARAM.X, NFSV4.X)"),
])
def test_cli_errors_are_one_line_and_write_nothing(tmp_path: Path, argv: list[str],
                                                   message: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    shares = tmp_path / "shares.toml"
    shares.write_text(TOML)
    out = tmp_path / "OUT"
    assert netfs_render([*argv, "--shares", str(shares), "-o", str(out)]) == 1
    assert capsys.readouterr().err == message.replace("OUT", str(out)) + "\n"
    assert not out.exists()


def test_console_script_and_templates_ship_as_package_data() -> None:
    script = Path(sys.executable).parent / "netfs-render"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    from importlib.resources import files

    templates = files("netfs") / "templates"
    assert {p.name for p in templates.iterdir()} >= {"smb.conf.j2", "ganesha.conf.j2"}
