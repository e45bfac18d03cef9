"""The command line of the overhead benchmark: ``python -m benchmarks.overhead --help``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from .report import format_report, summarise, verdicts
from .runner import Options, run_benchmark
from .scenarios import packaged_data_file
from .worker import worker_main

DEFAULT_SIZES = (200, 2000)
DEFAULT_REPS = (20, 10)
DEFAULT_ACCOUNT_REPS = 7
QUICK_SIZES = (200,)
QUICK_REPS = (2,)
QUICK_ACCOUNT_REPS = 2
DEFAULT_ITERATIONS = 10
DEFAULT_CLASSES = (5, 40)
PER_CLASS = 10


def int_list(text: str) -> tuple[int, ...]:
    """Parse ``200,2000`` into ``(200, 2000)``."""
    return tuple(int(part) for part in text.split(",") if part.strip())


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.overhead",
        description="What rulechef-trace costs an offline learn_rules() run.",
    )
    parser.add_argument("--sizes", type=int_list, help="workload sizes (default 200,2000)")
    parser.add_argument(
        "--reps", type=int_list, help="timed rounds, one number or one per size (default 20,10)"
    )
    parser.add_argument(
        "--account-reps", type=int, help=f"accounted runs per size (default {DEFAULT_ACCOUNT_REPS})"
    )
    parser.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS)
    parser.add_argument("--data", type=Path, help="JSONL data (default: the demo's intents)")
    parser.add_argument("--text-field", default="text")
    parser.add_argument("--label-field", default="label")
    parser.add_argument(
        "--classes",
        type=int_list,
        help="label counts of the synthetic trace-size runs (default 5,40; 0 to skip)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 200 only, 2 rounds")
    parser.add_argument(
        "--paired", type=int, default=0, metavar="N", help="also N plain/recorded pairs in C"
    )
    parser.add_argument("--json", action="store_true", help="print the raw result as JSON")
    parser.add_argument("--from-json", type=Path, metavar="FILE", help="report a saved --json")
    parser.add_argument("--worker", nargs=2, metavar=("CONFIG", "TMP"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def options_from(args: argparse.Namespace) -> Options:
    """Resolve defaults (and ``--quick``) into :class:`Options`."""
    sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    reps = args.reps or (QUICK_REPS if args.quick else DEFAULT_REPS)
    if len(reps) == 1:
        reps = reps * len(sizes)
    if len(reps) != len(sizes):
        raise SystemExit("--reps needs one number, or one per size")
    account_reps = args.account_reps or (QUICK_ACCOUNT_REPS if args.quick else DEFAULT_ACCOUNT_REPS)
    classes = args.classes if args.classes is not None else DEFAULT_CLASSES
    return Options(
        sizes=tuple(sizes),
        reps=tuple(reps),
        account_reps=account_reps,
        iterations=args.iterations,
        data=args.data or packaged_data_file(),
        text_field=args.text_field,
        label_field=args.label_field,
        classes=tuple(c for c in classes if c > 0),
        per_class=PER_CLASS,
        paired=args.paired,
    )


def main(argv: Sequence[str] | None = None, out: IO[str] | None = None) -> int:
    """Run the benchmark (or one worker); 0 when every verdict passes, 1 otherwise."""
    args = parse_args(argv)
    if args.worker:
        return worker_main(*args.worker)
    out = out or sys.stdout
    if args.from_json:
        result = json.loads(args.from_json.read_text())
    else:
        result = run_benchmark(options_from(args))
    if args.json:
        out.write(json.dumps(result, indent=2) + "\n")
    else:
        out.write(format_report(result) + "\n")
    return 1 if any(not row["passed"] for row in verdicts(summarise(result))) else 0


if __name__ == "__main__":
    sys.exit(main())
