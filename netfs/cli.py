"""``netfs-render``: smb.conf or ganesha.conf from a share list, optionally checked.

    netfs-render smb --shares shares.toml --set "workgroup=EXAMPLE" -o /etc/samba/smb.conf --check
    netfs-render ganesha --shares shares.toml --set recovery_root=/cluster/ganesha -o ...

For ``smb``, ``--set`` adds or overrides [global] parameters.  For ``ganesha`` it sets
``recovery_root`` (required: it must be on storage every node shares), ``grace_period``,
``lease_lifetime``, ``nfs_port``, and parameters of the two blocks as
``NFS_CORE_PARAM.Name=value`` or ``NFSV4.Name=value``.  ``--check`` refuses to write a
file that testparm (smb) or the structural check (ganesha) rejects.  The output file is
replaced atomically, so a node never reads half a file.  Errors are one line; exit 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from ctdb.errors import ConfigError
from netfs import render
from netfs.shares import load_shares


def _assignment(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="netfs-render",
                                description="render smb.conf or ganesha.conf from a share list")
    p.add_argument("kind", choices=("smb", "ganesha"))
    p.add_argument("--shares", required=True, type=Path, help="the share list (TOML)")
    p.add_argument("--set", dest="settings", action="append", default=[], type=_assignment,
                   metavar="KEY=VALUE", help="a parameter (repeatable)")
    p.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    p.add_argument("--header", help="comment lines heading the file (default: generated)")
    p.add_argument("--check", action="store_true",
                   help="validate the result (testparm for smb) and fail if it is rejected")
    return p


def _ganesha(args: argparse.Namespace) -> str:
    shares = load_shares(args.shares)
    numbers = {"grace_period": 90, "lease_lifetime": 60, "nfs_port": 2049}
    blocks: dict[str, dict[str, str]] = {"NFS_CORE_PARAM": {}, "NFSV4": {}}
    recovery_root = None
    for key, value in args.settings:
        block, dot, name = key.partition(".")
        if dot and block.upper() in blocks:
            blocks[block.upper()][name] = value
        elif key == "recovery_root":
            recovery_root = value
        elif key in numbers:
            try:
                numbers[key] = int(value)
            except ValueError:
                raise ConfigError(f"--set {key}={value}: not a number") from None
        else:
            raise ConfigError(f"--set {key}: unknown for ganesha (recovery_root, "
                              f"{', '.join(numbers)}, NFS_CORE_PARAM.X, NFSV4.X)")
    if recovery_root is None:
        raise ConfigError("ganesha needs --set recovery_root=PATH, a directory on storage"
                          " every node shares")
    text = render.render_ganesha(shares, recovery_root, core=blocks["NFS_CORE_PARAM"],
                                 nfsv4=blocks["NFSV4"], header=args.header,
                                 grace_period=numbers["grace_period"],
                                 lease_lifetime=numbers["lease_lifetime"],
                                 nfs_port=numbers["nfs_port"])
    if args.check:
        render.validate_ganesha(text, str(args.output or "ganesha.conf"))
    return text


def _smb(args: argparse.Namespace) -> str:
    text = render.render_smb(load_shares(args.shares), dict(args.settings), header=args.header)
    if args.check:
        render.validate_smb(text, str(args.output or "smb.conf"))
    return text


def write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    """Replace *path* by a file holding *text* in one rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        text = _smb(args) if args.kind == "smb" else _ganesha(args)
        if args.output is None:
            sys.stdout.write(text)
        else:
            write_atomically(args.output, text)
    except ConfigError as exc:
        print(f"netfs-render: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"netfs-render: {exc.filename or ''}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
