#!/bin/bash
# packaging/build.sh [OUTDIR]: build pyctdb's .deb and .rpm into OUTDIR
# (default: build/packages in the repository, which .gitignore's build/ covers).
#
# Builds from a clean copy of the source tree in a temporary directory, never in the
# repository: the files git tracks plus the untracked ones it does not ignore (so
# uncommitted work is packaged, and .venv, caches and earlier builds are not).  Then
#   - the .deb with dpkg-buildpackage -us -uc -b (packaging/debian as debian/),
#   - the .rpm with rpmbuild from a source tarball of the same copy (on Debian with
#     packaging/rpm/macros.debian-shim standing in for Fedora's macro packages),
#   - lintian on the .deb: its report goes to OUTDIR/lintian.txt, and an error fails
#     the build.
# The builds' logs are kept beside the packages (dpkg-buildpackage.log, rpmbuild.log).
# Needs (Debian 12): debhelper dh-python pybuild-plugin-pyproject python3-all rpm lintian.
# Env: PYCTDB_PACKAGES="deb rpm" (default) selects what to build.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$REPO/build/packages}
FORMATS=${PYCTDB_PACKAGES:-deb rpm}
# A clean environment: the pyenv python first on a login PATH breaks pybuild, and a
# venv's or the caller's Python variables must not leak into the builds.
CLEAN_ENV=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 TERM=dumb)

say() { printf 'build.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

for tool in dpkg-buildpackage rpmbuild lintian; do
    command -v "$tool" >/dev/null || die "$tool is missing: apt-get install debhelper dh-python pybuild-plugin-pyproject python3-all rpm lintian"
done

# One version, three places: pyproject.toml, debian/changelog, the spec.
VERSION=$(/usr/bin/python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$REPO/pyproject.toml")
DEB_VERSION=$(dpkg-parsechangelog -l "$REPO/packaging/debian/changelog" -S Version)
RPM_VERSION=$(sed -n 's/^Version:[[:space:]]*//p' "$REPO/packaging/rpm/pyctdb.spec")
[ "$DEB_VERSION" = "$VERSION" ] || die "packaging/debian/changelog says $DEB_VERSION, pyproject.toml $VERSION: add a changelog entry"
[ "$RPM_VERSION" = "$VERSION" ] || die "packaging/rpm/pyctdb.spec says $RPM_VERSION, pyproject.toml $VERSION"

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pyctdb-packages.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
SRC=$WORK/pyctdb-$VERSION
mkdir -p "$SRC" "$WORK/home"

# -- the clean copy ----------------------------------------------------------------
if git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then
    # -c: tracked, -o --exclude-standard: untracked and not ignored.  A tracked file
    # deleted in the work tree is skipped.
    git -C "$REPO" ls-files -z -co --exclude-standard \
        | (cd "$REPO" && while IFS= read -r -d '' f; do
               [ -e "$f" ] || [ -L "$f" ] && printf '%s\0' "$f"; done) \
        | tar -C "$REPO" --null -T - -cf - | tar -C "$SRC" -xf -
else
    # Not a git checkout (an unpacked tarball): everything but build products.
    tar -C "$REPO" --exclude=./.venv --exclude=./build --exclude=./.git \
        --exclude='*.egg-info' --exclude=__pycache__ --exclude=.mypy_cache \
        --exclude=.ruff_cache --exclude=.pytest_cache --exclude=.hypothesis -cf - . \
        | tar -C "$SRC" -xf -
fi
say "source tree: $(find "$SRC" -type f | wc -l) files in $SRC"

# -- .rpm ---------------------------------------------------------------------------
build_rpm() {
    local top=$WORK/rpm
    mkdir -p "$top"/{SOURCES,SPECS,BUILD,RPMS,SRPMS}
    tar -C "$WORK" --owner=0 --group=0 -czf "$top/SOURCES/pyctdb-$VERSION.tar.gz" "pyctdb-$VERSION"
    local shim=()
    if [ "$(rpm --eval '%{?pyproject_wheel:yes}')" != yes ]; then
        # Debian: no pyproject-rpm-macros or systemd-rpm-macros, and an empty rpm
        # database to check BuildRequires against.
        shim=(--load "$SRC/packaging/rpm/macros.debian-shim"
              --define "_debian_shim_dir $SRC/packaging/rpm" --nodeps)
    fi
    (cd "$WORK" && "${CLEAN_ENV[@]}" HOME="$WORK/home" rpmbuild \
        --define "_topdir $top" "${shim[@]}" -bb "$SRC/packaging/rpm/pyctdb.spec") \
        > "$OUT/rpmbuild.log" 2>&1 || { tail -n 40 "$OUT/rpmbuild.log" >&2; die "rpmbuild failed"; }
    local rpm_file
    rpm_file=$(find "$top/RPMS" -name "pyctdb-$VERSION-*.noarch.rpm" | head -n 1)
    [ -n "$rpm_file" ] || die "rpmbuild made no pyctdb-$VERSION rpm"
    cp "$rpm_file" "$OUT/"
    say "built $OUT/$(basename "$rpm_file")"
}

# -- .deb ---------------------------------------------------------------------------
build_deb() {
    cp -a "$SRC/packaging/debian" "$SRC/debian"
    (cd "$SRC" && "${CLEAN_ENV[@]}" HOME="$WORK/home" dpkg-buildpackage -us -uc -b) \
        > "$OUT/dpkg-buildpackage.log" 2>&1 \
        || { tail -n 40 "$OUT/dpkg-buildpackage.log" >&2; die "dpkg-buildpackage failed"; }
    local deb=$WORK/pyctdb_${VERSION}_all.deb
    [ -f "$deb" ] || die "dpkg-buildpackage made no $(basename "$deb")"
    cp "$deb" "$OUT/"
    say "built $OUT/$(basename "$deb")"
    # lintian: every tag but the pedantic and experimental ones; errors fail the build.
    local status=0
    "${CLEAN_ENV[@]}" HOME="$WORK/home" lintian --display-info --fail-on error \
        "$OUT/$(basename "$deb")" > "$OUT/lintian.txt" 2>&1 || status=$?
    say "lintian: $(grep -c '^E: ' "$OUT/lintian.txt" || true) errors," \
        "$(grep -c '^W: ' "$OUT/lintian.txt" || true) warnings," \
        "$(grep -c '^I: ' "$OUT/lintian.txt" || true) info (in $OUT/lintian.txt)"
    sed 's/^/  /' "$OUT/lintian.txt" >&2
    [ "$status" -eq 0 ] || die "lintian reports errors"
}

# The rpm first: its tarball is made before debian/ is added to the copy.
case " $FORMATS " in *" rpm "*) build_rpm ;; esac
case " $FORMATS " in *" deb "*) build_deb ;; esac
