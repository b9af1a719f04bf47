"""``python -m sluicegate_sidecar.verifier``: the serving sidecar's short-lived verifier child.

Reads one ``VerifyRequest`` (msgpack) on stdin, writes one ``VerifyReply`` on stdout, exits 0. Any
failure exits 2 with one line on stderr naming the error's type only: nothing read from stdin (keys,
the config) ever reaches stderr, which the sidecar logs.
"""

from __future__ import annotations

import sys

from .unsealing import answer
from .verifyproto import decode_request, encode


def main() -> int:
    try:
        reply = encode(answer(decode_request(sys.stdin.buffer.read())))
    except Exception as exc:
        sys.stderr.write(f"sluicegate verifier: {type(exc).__name__}\n")
        return 2
    sys.stdout.buffer.write(reply)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
