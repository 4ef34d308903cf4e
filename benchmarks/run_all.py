"""Run every benchmark under benchmarks/ in turn (``make bench``).

Each benchmark compares against its own anchor in the same run and prints a ratio;
this runner only executes them one after another so their figures are not mixed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHES = ["frames", "poses", "labels", "train", "face", "render", "dvc"]


def main() -> int:
    here = Path(__file__).resolve().parent
    failed = []
    for name in BENCHES:
        if not (here / f"bench_{name}.py").exists():
            continue
        print(f"\n===== benchmarks.bench_{name} =====", flush=True)
        rc = subprocess.call([sys.executable, "-m", f"benchmarks.bench_{name}"], cwd=here.parent)
        if rc != 0:
            failed.append(name)
    if failed:
        print(f"\nbenchmarks that failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
