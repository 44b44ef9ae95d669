"""Rendering a PDF report must not loosen the ingest's JPEG check: importing WeasyPrint sets Pillow's
process-wide LOAD_TRUNCATED_IMAGES, which made truncated snapshots pass after the first report."""
from __future__ import annotations

import cv2
import numpy as np

from service import reports
from service.ingest import jpeg_problem


def _truncated_jpeg() -> bytes:
    rng = np.random.default_rng(7)
    image = rng.integers(0, 255, size=(480, 640, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return encoded.tobytes()[: len(encoded) // 2]


def test_truncated_jpeg_is_refused_before_and_after_a_pdf_is_rendered():
    data = _truncated_jpeg()
    assert jpeg_problem(data) is not None
    pdf = reports.render_pdf("<html><body><p>小区月报</p></body></html>")
    assert pdf.startswith(b"%PDF")
    assert jpeg_problem(data) is not None
