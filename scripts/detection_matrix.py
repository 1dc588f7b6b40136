"""Run the fault detection matrix and write it to DETECTION.md (make detection-matrix)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dataops.commands.detection import MatrixRow, detection_rate, run_matrix, to_markdown
from dataops.core.config import PROJECT_ROOT, load_settings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--target", default="ci")
    parser.add_argument("--write", type=Path, default=PROJECT_ROOT / "DETECTION.md")
    args = parser.parse_args()

    def report(row: MatrixRow) -> None:
        print(
            f"{row.fault:<22} {row.outcome:<5} {row.publish_text:<28} {'ok' if row.as_intended else 'MISSED'}",
            flush=True,
        )

    rows = run_matrix(load_settings(args.target), scale=args.scale, on_row=report)
    args.write.write_text(to_markdown(rows, args.scale, args.target), encoding="utf-8")
    rate = detection_rate(rows)
    print(f"fault detection rate: {rate:.0%} -> {args.write}")
    return 0 if rate == 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
