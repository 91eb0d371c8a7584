"""Start-up cost of the package against `import torch, transformers`, measured in one run.

    python bench/import_time.py               # 5 fresh interpreters per case, interleaved
    python bench/import_time.py --repeats 9

Each case runs in a fresh interpreter (`python -c ...`, wall time of the whole process, so the interpreter's own
start is in every figure alike), the cases interleaved so that drifts in load hit them all alike; the figure is the
median. The page cache is warm (every case runs twice first).

- `python` alone: the interpreter's start, for scale.
- `import torch, transformers`: the reference of the goal (`import r2tnet_hf` at no more than 1.3 times it).
- `import r2tnet_hf`: the package; it imports neither torch nor transformers (`r2tnet_hf._auto`).
- `r2tnet --help`: the command's start (goal: under 1 s).
- `import r2tnet_hf` + `AutoConfig`: where the Auto classes first resolve the package's configs; transformers'
  own `AutoConfig` import is most of it (it loads `transformers.modeling_utils`).
- `import r2tnet_hf` + `R2TNetModel`: a model family, i.e. what loading a model costs before any weight is read.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CASES = {
    "python alone": "pass",
    "import torch, transformers": "import torch, transformers",
    "import r2tnet_hf": "import r2tnet_hf",
    "r2tnet --help": "import sys; sys.argv = ['r2tnet', '--help']; from r2tnet_hf.cli import main; main()",
    "import r2tnet_hf + AutoConfig": "import r2tnet_hf; from transformers import AutoConfig; AutoConfig.for_model('r2tnet')",
    "import r2tnet_hf + R2TNetModel": "import r2tnet_hf; r2tnet_hf.R2TNetModel",
}


def seconds(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="fresh interpreters per case (default 5)")
    args = parser.parse_args()
    for code in CASES.values():
        for _ in range(2):
            seconds(code)
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(args.repeats):
        for name, code in CASES.items():
            times[name].append(seconds(code))
    median = {name: statistics.median(series) for name, series in times.items()}
    reference = median["import torch, transformers"]
    print(f"median of {args.repeats} fresh interpreters per case (wall time of the process)")
    for name, value in median.items():
        print(f"  {name:32s} {value:6.2f} s   {value / reference:5.2f} × import torch, transformers")
    ratio = median["import r2tnet_hf"] / reference
    print(f"import r2tnet_hf ÷ import torch, transformers: {ratio:.2f} (goal ≤ 1.3)")
    print(f"r2tnet --help: {median['r2tnet --help']:.2f} s (goal < 1 s)")


if __name__ == "__main__":
    main()
