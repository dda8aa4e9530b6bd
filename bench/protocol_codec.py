"""Encode and decode rates of the wire protocol (header included).

Run: .venv/bin/python bench/protocol_codec.py
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable

from ctdb.protocol import (
    Address,
    EchoRequest,
    Flag,
    KeyValue,
    Message,
    PingRequest,
    StatusReply,
    decode,
    encode,
)


def rate(func: Callable[[], object], seconds: float = 1.0) -> float:
    """Calls per second of ``func``, timed over about ``seconds``."""
    batch, calls, elapsed = 1, 0, 0.0
    while elapsed < seconds:
        start = time.perf_counter()
        for _ in range(batch):
            func()
        elapsed += time.perf_counter() - start
        calls += batch
        batch *= 2
    return calls / elapsed


def main() -> None:
    src, dst = Address(1, 0x10001), Address(2, 3)
    items = [KeyValue(f"key{i}", f"value {i}") for i in range(10)]
    cases = {
        "PingRequest": Message(PingRequest(), src, dst, 42, 7, Flag.REQUEST),
        "StatusReply(10 items)": Message(
            StatusReply("clusterd", 1234, "HEALTHY", items), src, dst, 42, 7, Flag.REPLY
        ),
        "EchoRequest(1 MiB)": Message(EchoRequest(bytes(1 << 20)), src, dst, 42, 7),
    }
    print(f"{'message':<24}{'bytes':>10}{'encode/s':>14}{'decode/s':>14}")
    for name, msg in cases.items():
        frame = encode(msg)
        assert decode(frame) == msg
        enc = rate(functools.partial(encode, msg))
        dec = rate(functools.partial(decode, frame))
        print(f"{name:<24}{len(frame):>10}{enc:>14,.0f}{dec:>14,.0f}")
    print(f"python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
