"""Run a notebook's code cells as a plain script and time each cell: for machines without Jupyter.

Used for the timed GPU run of notebook 03 (README, Speed): the GPU machine has PyTorch but no
Jupyter, and what matters there is what the cells print and how long each takes. The cells run
in order in one namespace, as a kernel would run them; IPython magics (`%matplotlib inline`) are
skipped, `display` prints, figures go to the Agg backend (save_fig still writes them), and the value of a cell's
last expression is printed as a notebook would show it (DataFrames as text). The first failing
cell stops the run with its traceback and exit code 1. nbconvert/nbval execute the committed
notebooks; this runner only times them.

Run: python benchmarks/run_notebook.py notebooks/03_training.ipynb
"""
import argparse
import ast
import json
import os
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")


def code_cells(path):
    """Return [(cell index, source without IPython magics)] for the notebook's code cells."""
    cells = json.loads(Path(path).read_text())["cells"]
    out = []
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
        out.append((i, "\n".join(lines)))
    return out


def show(value):
    """Print a cell's last value the way a notebook shows it (tables as text, None and figures not at all)."""
    if value is None or type(value).__module__.startswith("matplotlib"):
        return
    to_string = getattr(value, "to_string", None)
    print(to_string() if callable(to_string) else repr(value))


def run_cell(source, namespace, filename):
    """Execute one cell; return the value of its last expression (None when it ends in a statement)."""
    tree = ast.parse(source, filename)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, filename, "exec"), namespace)
    if last is not None:
        return eval(compile(ast.Expression(last.value), filename, "eval"), namespace)
    return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("notebook")
    args = parser.parse_args()
    path = Path(args.notebook).resolve()
    os.chdir(path.parent)  # where the notebook's setup cell looks for utils.py, as Jupyter starts there
    namespace = {"__name__": "__main__", "display": lambda *values: [show(v) for v in values]}
    times = []
    start = time.perf_counter()
    for index, source in code_cells(path):
        print(f"\n----- cell {index} -----", flush=True)
        t0 = time.perf_counter()
        try:
            show(run_cell(source, namespace, f"{path.name}[{index}]"))
        except Exception:
            traceback.print_exc()
            print(f"cell {index} failed after {time.perf_counter() - t0:.1f} s", flush=True)
            sys.exit(1)
        times.append((index, time.perf_counter() - t0))
        print(f"[cell {index}: {times[-1][1]:.1f} s]", flush=True)
    total = time.perf_counter() - start
    slowest = sorted(times, key=lambda t: -t[1])[:5]
    print(f"\n{path.name}: {len(times)} code cells in {total / 60:.2f} min; slowest: "
          + ", ".join(f"cell {i} {s:.0f} s" for i, s in slowest))


if __name__ == "__main__":
    main()
