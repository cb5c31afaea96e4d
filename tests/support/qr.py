"""Reading QR codes back from real browser screenshots with zxing-cpp: the only check that a
phone can actually scan what a page prints."""

from __future__ import annotations

from pathlib import Path

import av
import zxingcpp


def decode_qr(png: Path) -> list[str]:
    """The QR codes zxing-cpp finds in a screenshot (decoded to grey with PyAV)."""
    with av.open(str(png)) as container:
        frame = next(container.decode(video=0)).reformat(format="gray")
    plane, width, height = frame.planes[0], frame.width, frame.height
    data = bytes(plane)
    rows = b"".join(data[i * plane.line_size : i * plane.line_size + width] for i in range(height))
    # QR codes only: with every format on, zxing-cpp once read a stretch of the page as a
    # one-dimensional barcode ("B43B") beside the QR code.
    found = zxingcpp.read_barcodes(
        memoryview(rows).cast("B", (height, width)), formats=zxingcpp.BarcodeFormat.QRCode
    )
    return [code.text for code in found]
