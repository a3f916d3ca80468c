"""`python -m tools.vectors` (or `./scripts/vectors`): write every vector family to `protocol/vectors/`."""

from __future__ import annotations

import json
import sys

from . import answers, batches, fleet


def main() -> int:
    """Build each family and write one JSON file per vector."""
    for family in (batches, fleet, answers):
        family.FOLDER.mkdir(parents=True, exist_ok=True)
        built = family.build()
        for name, vector in built.items():
            (family.FOLDER / f"{name}.json").write_text(json.dumps(vector, indent=2) + "\n")
        print(f"wrote {len(built)} vectors to {family.FOLDER}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
