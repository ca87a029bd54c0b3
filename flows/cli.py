"""The ``dndx`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dndx.errors import DndxError

__all__ = ["main"]


def _run(args: argparse.Namespace) -> None:
    from flows.pipeline import main as run_pipeline

    ran = run_pipeline(args.params, args.stage or None)
    print("\nStages:", ", ".join(f"{s} ({'ran' if r else 'up to date'})" for s, r in ran.items()))
    balance_path = Path("metrics/prepare.json")
    if balance_path.exists():
        print("\nClass balance of the peak candidates (metrics/prepare.json):")
        for split, counts in json.loads(balance_path.read_text()).items():
            print(
                f"  {split:<10} {counts['n_candidates']:>9} candidates: "
                f"{100 * counts['signal_fraction']:5.1f} % signal, "
                f"{100 * (1 - counts['signal_fraction']):5.1f} % noise"
            )


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the chosen command."""
    parser = argparse.ArgumentParser(prog="dndx", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="reproduce the whole pipeline (DVC stages via Prefect)")
    run.add_argument(
        "--params", default="params.yaml", help="parameter file (default: %(default)s)"
    )
    run.add_argument("--stage", action="append", help="only this stage (repeatable)")
    run.set_defaults(handler=_run)
    args = parser.parse_args(argv)
    try:
        args.handler(args)
    except DndxError as error:
        print(f"dndx: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
