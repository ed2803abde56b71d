"""Redaction time of the hook's secret patterns on pathological inputs, against input length.

Each input of tests/secret_corpus.py's ADVERSARIAL list is cut to 75k, 150k and 300k
characters and redacted (best of --repeat runs); the table shows seconds per size and the
growth from 150k to 300k (about 2 when linear, 4 when quadratic). The unit test
test_hook_secret_corpus only checks that each input is redacted and ends.

    ../.venv/bin/python bench/bench_redact.py [--repeat 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from secret_corpus import ADVERSARIAL

from agentmon.hook import redact

SIZES = (75_000, 150_000, 300_000)


def best_of(text: str, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        redact.redact_text(text)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per size, best kept (3)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    redact.redact_text("warm up: password=x ghp_" + "a" * 36 + " mysql -p x ://a:b@c")
    rows = []
    print(f"{'case':>4} {'input (start)':<24}" + "".join(f"{n:>10,}" for n in SIZES) + "  growth")
    for i, text in enumerate(ADVERSARIAL):
        seconds = [best_of(text[:n], args.repeat) for n in SIZES]
        growth = seconds[2] / seconds[1] if seconds[1] > 0 else float("nan")
        rows.append({"case": i, "seconds": dict(zip(map(str, SIZES), seconds, strict=True)),
                     "growth_150k_to_300k": growth})
        print(f"{i:>4} {repr(text[:16])[:24]:<24}" + "".join(f"{s:>10.3f}" for s in seconds)
              + f"  x{growth:.1f}")
    worst = max(rows, key=lambda r: r["seconds"][str(SIZES[-1])])
    print(f"slowest at 300k: case {worst['case']}, {worst['seconds'][str(SIZES[-1])]:.3f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
