"""The HTML reports as a person sees them: headless Chromium screenshots that show the charts.

Skipped when /usr/bin/chromium is absent (``apt-get install -y chromium`` provides it).
"""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="headless screenshots need /usr/bin/chromium")


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def decode_png(path: Path) -> tuple[int, int, Counter[bytes]]:
    """Width, height and a count of RGB colours of an 8-bit, non-interlaced RGB or RGBA PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, chunks = 8, []
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        body = data[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0
            step = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            chunks.append(body)
    raw = zlib.decompress(b"".join(chunks))
    stride, previous, colours = width * step, bytearray(width * step), Counter()
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - step] if i >= step else 0
            up, corner = previous[i], previous[i - step] if i >= step else 0
            guess = (0, left, up, (left + up) // 2, _paeth(left, up, corner))[kind]
            line[i] = (line[i] + guess) & 255
        colours.update(bytes(line[x : x + 3]) for x in range(0, stride, step * 4))  # every 4th pixel
        previous = line
    return width, height, colours


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shots")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "screenshot-report.py"), str(out)],
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    return out


def test_the_savings_report_screenshot_shows_stacked_spend_and_line_charts(shots) -> None:
    width, height, colours = decode_png(shots / "savings.png")
    assert (width, height) == (1280, 1600)
    blue, orange, green = bytes.fromhex("4e79a7"), bytes.fromhex("f28e2b"), bytes.fromhex("59a14f")
    assert colours[blue] > 2_000 and colours[orange] > 1_000 and colours[green] > 500


def test_the_reconciliation_screenshot_shows_the_gap_in_red(shots) -> None:
    _, _, colours = decode_png(shots / "reconcile.png")
    assert colours[bytes.fromhex("d62728")] > 100  # the $0.37 gap bar, over the threshold
    assert colours[bytes.fromhex("4e79a7")] > 1_000 and colours[bytes.fromhex("f28e2b")] > 1_000
