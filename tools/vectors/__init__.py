"""The protocol's test vectors in `protocol/vectors/` (SPEC.md section 7), rebuilt by `./scripts/vectors`.

Outside the installed package because it writes files. Each module builds one family: `batches`
(signed ingest bodies, accepted and refused), `fleet` (heartbeat, configuration fetch, key
rotation) and `answers` (the collector's answers to an upload and what an agent does with each).
`build()` returns a family's vectors keyed by file name and `FOLDER` says where they live;
tests/protocol compares the stored files with a fresh build, so a change to the wire format
comes with regenerated vectors.
"""

from __future__ import annotations

from pathlib import Path

VECTORS_DIR = Path(__file__).resolve().parents[2] / "protocol" / "vectors"
