"""A Mandelbrot image rendered in bands on the workers and stitched into a PNG.

    .venv/bin/python examples/mandelbrot.py [--out mandelbrot.png] [--size 600x400] [--bands 16]
"""
from __future__ import annotations

import argparse
import struct
import sys
import zlib

import dsage_core as dsage


def render_band(width: int, height: int, y0: int, y1: int, max_iter: int = 200) -> bytes:
    """Rows y0..y1 of the image as 8-bit grey levels (bytes, plain data)."""
    out = bytearray()
    for y in range(y0, y1):
        ci = (y / height) * 2.4 - 1.2
        for x in range(width):
            cr = (x / width) * 3.5 - 2.5
            zr = zi = 0.0
            n = 0
            while n < max_iter and zr * zr + zi * zi <= 4.0:
                zr, zi = zr * zr - zi * zi + cr, 2 * zr * zi + ci
                n += 1
        # smooth-ish palette: inside black, outside by escape time
            out.append(0 if n == max_iter else 255 - int(255 * n / max_iter))
    dsage.progress(1.0, f"rows {y0}-{y1}")
    return bytes(out)


def write_png(path: str, width: int, height: int, grey: bytes) -> None:
    """A minimal greyscale PNG writer (no dependency)."""
    raw = b"".join(b"\x00" + grey[y * width:(y + 1) * width] for y in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


class Mandelbrot(dsage.DistributedFunction):
    def __init__(self, width: int, height: int, bands: int) -> None:
        super().__init__()
        self.width, self.height, self.bands = width, height, bands
        self.rows: dict[int, bytes] = {}

    def start(self) -> None:
        step = -(-self.height // self.bands)
        for y0 in range(0, self.height, step):
            self.submit(render_band, self.width, self.height, y0, min(self.height, y0 + step), tag=str(y0))

    def process_result(self, job: dsage.Job) -> None:
        self.rows[int(self.tag_of(job))] = job.result
        if sum(len(r) for r in self.rows.values()) == self.width * self.height:
            self.finish(b"".join(self.rows[k] for k in sorted(self.rows)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="mandelbrot.png")
    ap.add_argument("--size", default="600x400")
    ap.add_argument("--bands", type=int, default=16)
    args = ap.parse_args()
    w, h = map(int, args.size.lower().split("x"))
    D = dsage.start_all(workers=2)
    try:
        m = Mandelbrot(w, h, args.bands)
        grey = m.run(D, timeout=600, raise_on_failure=True)
        write_png(args.out, w, h, grey)
        print(f"wrote {args.out} ({w}x{h}, {args.bands} bands)")
    finally:
        D.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
