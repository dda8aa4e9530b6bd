"""The Python side of macros.debian-shim: install a wheel, list and check its files.

Used only by rpmbuild on Debian (see macros.debian-shim); run with Debian's python3,
which has ``installer`` (python3-installer, pulled in by pybuild-plugin-pyproject).

    shim.py install --destdir D --prefix P --sitelib S --bindir B --datadir T
                    --interpreter PY WHEEL
    shim.py save-files --root D --sitelib S --output FILE MODULE...
    shim.py check-import --root D --sitelib S --files FILE [-e GLOB]...
"""

from __future__ import annotations

import argparse
import compileall
import fnmatch
import importlib
import pkgutil
import sys
from pathlib import Path

from installer import install as install_wheel
from installer.destinations import SchemeDictionaryDestination
from installer.sources import WheelFile


def install(a: argparse.Namespace) -> None:
    # Fedora's scheme, whatever Debian's sysconfig default (posix_local) says.
    scheme = {
        "purelib": a.sitelib, "platlib": a.sitelib, "headers": f"{a.prefix}/include",
        "scripts": a.bindir, "data": a.prefix,
    }
    destination = SchemeDictionaryDestination(scheme, interpreter=a.interpreter,
                                              script_kind="posix", destdir=a.destdir)
    with WheelFile.open(a.wheel) as source:
        install_wheel(source, destination, {"INSTALLER": b"rpm\n"})
    site = Path(a.destdir + a.sitelib)
    # As Fedora's %pyproject_install: RPM owns the files, so no RECORD (pip would
    # otherwise uninstall them).
    for record in site.glob("*.dist-info/RECORD"):
        record.unlink()
    # As Fedora's brp-python-bytecompile: __pycache__ at optimisation levels 0 and 1,
    # with the installed paths (not the build root's) inside.
    for level in (0, 1):
        ok = compileall.compile_dir(site, quiet=1, optimize=level, stripdir=a.destdir,
                                    prependdir="/")
        if not ok:
            sys.exit("byte-compiling failed")


def save_files(a: argparse.Namespace) -> None:
    site = Path(a.root + a.sitelib)
    lines = []
    for module in a.modules:
        if (site / module).is_dir():
            lines.append(f"{a.sitelib}/{module}/")
        elif (site / f"{module}.py").is_file():
            lines += [f"{a.sitelib}/{module}.py", f"{a.sitelib}/__pycache__/{module}.*"]
        else:
            sys.exit(f"pyproject_save_files: {module} is not in {site}")
    lines += [f"{a.sitelib}/{p.name}/" for p in sorted(site.glob("*.dist-info"))]
    Path(a.output).write_text("".join(f"{line}\n" for line in lines))


def check_import(a: argparse.Namespace) -> None:
    site = Path(a.root + a.sitelib)
    sys.path.insert(0, str(site))
    tops = [Path(line.rstrip("/")).name.removesuffix(".py")
            for line in Path(a.files).read_text().splitlines()
            if line.strip() and ".dist-info" not in line and "__pycache__" not in line]
    names = []
    for top in tops:
        names.append(top)
        package = importlib.import_module(top)
        if hasattr(package, "__path__"):
            names += [m.name for m in pkgutil.walk_packages(package.__path__, f"{top}.",
                                                            onerror=lambda _n: None)]
    checked = 0
    for name in names:
        if any(fnmatch.fnmatch(name, glob) for glob in a.exclude):
            continue
        importlib.import_module(name)
        checked += 1
    print(f"pyproject_check_import: imported {checked} modules")


def main() -> None:
    p = argparse.ArgumentParser(prog="shim.py")
    sub = p.add_subparsers(dest="command", required=True)
    i = sub.add_parser("install")
    for opt in ("destdir", "prefix", "sitelib", "bindir", "datadir", "interpreter"):
        i.add_argument(f"--{opt}", required=True)
    i.add_argument("wheel")
    s = sub.add_parser("save-files")
    for opt in ("root", "sitelib", "output"):
        s.add_argument(f"--{opt}", required=True)
    s.add_argument("modules", nargs="+")
    c = sub.add_parser("check-import")
    for opt in ("root", "sitelib", "files"):
        c.add_argument(f"--{opt}", required=True)
    c.add_argument("-e", dest="exclude", action="append", default=[])
    a = p.parse_args()
    {"install": install, "save-files": save_files, "check-import": check_import}[a.command](a)


if __name__ == "__main__":
    main()
