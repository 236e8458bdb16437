"""Printable share cards: each SLIP-39 share as text, a QR code PNG and an SVG, with a header.

The header (archive, custodian, key id, share i of N, threshold, date) lets a person tell cards
apart; the QR code holds the share's words only, exactly as the text does (docs/KEYS.md).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import segno
from PIL import Image, ImageDraw, ImageFont

CARD_MODE = 0o600


@dataclass(frozen=True, slots=True)
class CardHeader:
    archive: str
    custodian: str
    key_id: str
    index: int  # 1-based
    count: int
    threshold: int
    date: str  # YYYY-MM-DD
    passphrase: bool  # the shares were made with a SLIP-39 passphrase

    def lines(self) -> list[str]:
        return [
            f"custody key share {self.index} of {self.count} "
            f"(any {self.threshold} rebuild the key)",
            f"archive: {self.archive}",
            f"custodian: {self.custodian}",
            f"key id: {self.key_id}",
            f"made: {self.date}; SLIP-39 passphrase: {'needed' if self.passphrase else 'none'}",
        ]


def write_card(folder: Path, header: CardHeader, words: str) -> list[Path]:
    """share-<i>.txt, share-<i>.png and share-<i>.svg in `folder`, each 0600, never overwritten."""
    stem = folder / f"share-{header.index}"
    qr = segno.make(words, error="m", micro=False)
    text = "".join(f"# {line}\n" for line in header.lines()) + words + "\n"
    paths = [stem.with_suffix(".txt"), stem.with_suffix(".png"), stem.with_suffix(".svg")]
    for path, data in zip(paths, (text.encode(), _png(qr, header), _svg(qr, header)), strict=True):
        _write_private(path, data)
    return paths


def _png(qr: segno.QRCode, header: CardHeader) -> bytes:
    raw = io.BytesIO()
    qr.save(raw, kind="png", scale=6, border=4)
    code = Image.open(io.BytesIO(raw.getvalue())).convert("L")
    font = ImageFont.load_default()
    line_height = 16
    top = line_height * len(header.lines()) + 16
    width = max(code.width, 8 * max(len(line) for line in header.lines()) + 24)
    card = Image.new("L", (width, code.height + top), 255)
    draw = ImageDraw.Draw(card)
    for n, line in enumerate(header.lines()):
        draw.text((12, 8 + n * line_height), line, fill=0, font=font)
    card.paste(code, ((width - code.width) // 2, top))
    out = io.BytesIO()
    card.save(out, format="PNG")
    return out.getvalue()


def _svg(qr: segno.QRCode, header: CardHeader) -> bytes:
    scale, border = 6, 4
    width, height = qr.symbol_size(scale=scale, border=border)
    code = qr.svg_inline(scale=scale, border=border, omitsize=True)
    code = code.replace("<svg ", f'<svg width="{width}" height="{height}" ', 1)  # sized, nested
    line_height = 18
    top = line_height * len(header.lines()) + 12
    card_width = max(width, 8 * max(len(line) for line in header.lines()) + 24)
    texts = "".join(
        f'<text x="12" y="{20 + n * line_height}" font-family="monospace" font-size="13">'
        f"{escape(line)}</text>"
        for n, line in enumerate(header.lines())
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{card_width}" '
        f'height="{height + top}" viewBox="0 0 {card_width} {height + top}">'
        f'<rect width="100%" height="100%" fill="#fff"/>{texts}'
        f'<g transform="translate({(card_width - width) // 2},{top})">'
        f"{code}</g></svg>\n"
    ).encode()


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, CARD_MODE)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), CARD_MODE)
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
