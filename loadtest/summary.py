"""Print the short summary of a locust run from its CSV: throughput, latencies, failures."""

from __future__ import annotations

import csv
import sys
from pathlib import Path


def main() -> None:
    stats = Path(sys.argv[1] if len(sys.argv) > 1 else "loadtest/reports/run_stats.csv")
    with stats.open() as lines:
        rows = list(csv.DictReader(lines))
    columns = ("count", "fail", "req/s", "p50", "p95", "p99")
    print(f"\n{'request':40s} " + " ".join(f"{c:>7s}" for c in columns))
    failures = 0
    for row in rows:
        name = row["Name"] if row["Type"] else "TOTAL"
        label = f"{row['Type']} {name}".strip()
        failures += int(row["Failure Count"]) if row["Name"] != "Aggregated" else 0
        print(
            f"{label[:40]:40s} {row['Request Count']:>7s} {row['Failure Count']:>5s} "
            f"{float(row['Requests/s']):7.1f} {row['50%']:>7s} {row['95%']:>7s} {row['99%']:>7s}"
        )
    print("(latencies in ms; reports: loadtest/reports/report.html and run_*.csv)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
