"""Render resources/icons/*.svg to the PNG sizes desktops need (run once; the PNGs are committed)."""
import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtGui import QGuiApplication, QImage, QPainter  # noqa: E402
from PySide6.QtSvg import QSvgRenderer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent / "resources" / "icons"
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def render(svg: Path, size: int, out: Path) -> None:
    img = QImage(size, size, QImage.Format.Format_ARGB32)
    img.fill(Qt.GlobalColor.transparent)
    p = QPainter(img)
    QSvgRenderer(str(svg)).render(p)
    p.end()
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(str(out))


def main() -> int:
    app = QGuiApplication(sys.argv[:1])  # noqa: F841
    for size in SIZES:
        render(ROOT / "dsage.svg", size, ROOT / "hicolor" / f"{size}x{size}" / "apps" / "dsage.png")
    for svg in ROOT.glob("tray-*.svg"):
        render(svg, 64, ROOT / f"{svg.stem}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
