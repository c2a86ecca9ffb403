"""The next release's schemas (test only): what a gateway or consumer one version ahead knows."""

from __future__ import annotations

from pathlib import Path

from schemas import codec

NEXT_DIR = Path(__file__).parent / "avro"
CURRENT = codec.DEFAULT
NEXT = codec.Codec((codec.AVRO_DIR, NEXT_DIR))
