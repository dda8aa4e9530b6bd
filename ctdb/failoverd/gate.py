"""A millisecond lease on public IPv4 addresses, enforced by the kernel with nftables.

The kernel's address lifetimes (``valid_lft``) count whole seconds and are checked
lazily, so a lost node's address may linger ~2 s.  The gate makes the lease short and
exact: two nftables tables (``inet pyctdb`` and ``arp pyctdb``) drop ARP and IP traffic
to and from any of the node's public IPv4 addresses that is not in the ``live4`` set,
whose elements time out after ``IPGateMs``.  failoverd re-adds the addresses it holds
several times per lease while it may hold them; a node that is frozen, cut off or whose
failoverd died stops renewing, and within ``IPGateMs`` its kernel neither answers ARP
for the addresses nor accepts or sends their traffic, though the addresses are still
configured.  So the leader may give them to another node after detection + IPGateMs.

Renewals go through one long-running ``nft -i`` (no process per renewal). A renewal
replaces the set's contents in one transaction (flush and add on one line): re-adding
an element does not refresh its timeout.  IPv6 addresses are not gated (neighbour
discovery carries the target inside ICMPv6); they keep the kernel lifetime's bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import shutil
from collections.abc import Iterable

log = logging.getLogger(__name__)

TABLE = "pyctdb"


def _v4(addresses: Iterable[str]) -> list[str]:
    return sorted((a for a in addresses if ipaddress.ip_address(a).version == 4),
                  key=lambda a: int(ipaddress.IPv4Address(a)))


def _elements(addresses: Iterable[str], timeout_ms: int | None = None) -> str:
    suffix = f" timeout {timeout_ms}ms" if timeout_ms else ""
    return ", ".join(f"{a}{suffix}" for a in addresses)


def ruleset(public: Iterable[str]) -> str:
    """The gate's tables for these public addresses, replacing any earlier ones."""
    public4 = _v4(public)
    elements = f" elements = {{ {_elements(public4)} }};" if public4 else ""
    sets = (f"set public4 {{ type ipv4_addr;{elements} }}\n"
            "  set live4 { type ipv4_addr; flags timeout; }\n")
    return (
        f"table inet {TABLE}\ndelete table inet {TABLE}\n"
        f"table arp {TABLE}\ndelete table arp {TABLE}\n"
        f"table inet {TABLE} {{\n  {sets}"
        "  chain gate_in { type filter hook input priority -300; policy accept;\n"
        "    ip daddr @public4 ip daddr != @live4 drop\n  }\n"
        "  chain gate_out { type filter hook output priority -300; policy accept;\n"
        "    ip saddr @public4 ip saddr != @live4 drop\n  }\n}\n"
        f"table arp {TABLE} {{\n  {sets}"
        "  chain gate_in { type filter hook input priority 0; policy accept;\n"
        "    arp daddr ip @public4 arp daddr ip != @live4 drop\n  }\n"
        "  chain gate_out { type filter hook output priority 0; policy accept;\n"
        "    arp saddr ip @public4 arp saddr ip != @live4 drop\n  }\n}\n"
    )


def _replace(name: str, addresses: Iterable[str], timeout_ms: int | None = None) -> str:
    """One transaction: set *name* of both tables holds exactly these IPv4 addresses."""
    v4 = _v4(addresses)
    parts = []
    for family in ("inet", "arp"):
        parts.append(f"flush set {family} {TABLE} {name}")
        if v4:
            parts.append(f"add element {family} {TABLE} {name} {{ {_elements(v4, timeout_ms)} }}")
    return "; ".join(parts) + "\n"


def renewal(live: Iterable[str], timeout_ms: int) -> str:
    """The live set becomes *live*, each address for *timeout_ms*."""
    return _replace("live4", live, timeout_ms)


def change(address: str, live: bool, timeout_ms: int) -> str:
    """One address into or out of the live sets, the others' timeouts untouched."""
    if ipaddress.ip_address(address).version != 4:
        return ""
    verb, suffix = ("add", f" timeout {timeout_ms}ms") if live else ("delete", "")
    return "; ".join(f"{verb} element {family} {TABLE} live4 {{ {address}{suffix} }}"
                     for family in ("inet", "arp")) + "\n"


def set_public(public: Iterable[str]) -> str:
    """The gated addresses become *public*."""
    return _replace("public4", public)


class Gate:
    """The node's gate: ``open`` it, ``renew`` it often, ``close`` it at the end."""

    def __init__(self, timeout_ms: int) -> None:
        self.timeout_ms = timeout_ms
        self._nft: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self.broken = False

    @property
    def active(self) -> bool:
        """Installed, and nft has reported no error since (a firewall reload that
        flushed the ruleset makes every renewal fail: the gate is then broken)."""
        return self._nft is not None and self._nft.returncode is None and not self.broken

    async def open(self, public: Iterable[str]) -> bool:
        """Install the tables; False (and a warning) where nftables cannot be used."""
        if self.timeout_ms <= 0:
            return False
        await self.close()  # a broken gate's nft, if any
        self.broken = False
        nft = shutil.which("nft")
        if nft is None:
            log.warning("nft is not installed: public addresses are held by kernel "
                        "lifetimes alone (forced moves take seconds)")
            return False
        load = await asyncio.create_subprocess_exec(
            nft, "-f", "-", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        out, _ = await load.communicate(ruleset(public).encode())
        if load.returncode != 0:
            log.warning("cannot install the nftables gate (%s): public addresses are held "
                        "by kernel lifetimes alone", out.decode(errors="replace").strip()
                        .splitlines()[-1:] or load.returncode)
            return False
        self._nft = await asyncio.create_subprocess_exec(
            nft, "-i", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        self._reader = asyncio.ensure_future(self._read_errors())
        return True

    async def _read_errors(self) -> None:
        nft = self._nft
        if nft is None or nft.stdout is None:
            return
        while line := await nft.stdout.readline():
            text = line.decode(errors="replace").strip()
            if text and not text.startswith("nft>"):
                if not self.broken:
                    log.error("nftables gate: %s", text)
                self.broken = True

    def _send(self, line: str) -> None:
        nft = self._nft
        if nft is None or nft.stdin is None or nft.returncode is not None:
            return
        try:
            nft.stdin.write(line.encode())
        except (BrokenPipeError, ConnectionResetError):
            log.error("the nftables gate's nft process is gone")  # noqa: TRY400

    def renew(self, live: Iterable[str]) -> None:
        """The addresses that stay reachable for the next ``timeout_ms``."""
        self._send(renewal(live, self.timeout_ms))

    def change(self, address: str, live: bool) -> None:
        """One address lit (for a lease) or dark now, without renewing the others."""
        self._send(change(address, live, self.timeout_ms))

    def set_public(self, public: Iterable[str]) -> None:
        self._send(set_public(public))

    async def close(self) -> None:
        """Remove the tables (the node holds nothing any more) and stop nft."""
        nft = self._nft
        self._nft = None
        if nft is None:
            return
        if nft.stdin is not None and nft.returncode is None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                nft.stdin.write(f"delete table inet {TABLE}; delete table arp {TABLE}\n"
                                .encode())
                nft.stdin.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await nft.wait()
        if nft.returncode is None:
            nft.kill()
            await nft.wait()
        if self._reader is not None:
            self._reader.cancel()
