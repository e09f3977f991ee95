"""Run every benchmark section and write docs/benchmarks.md.

Each section is a module ``benchmarks.bench_<name>`` with ``run() -> str`` returning
Markdown.  A section's result is kept in ``docs/bench/<name>.md`` (with the machine and
versions of the run that produced it), so running one section does not erase the others;
``docs/benchmarks.md`` is assembled from all of them.
"""

from __future__ import annotations

import importlib
import platform
import sys
import time
from pathlib import Path

SECTIONS = [
    "ingest",
    "understand",
    "understand_encoder",
    "understand_methods",
    "understand_heads",
    "detect",
    "analyze",
    "act",
    "web",
    "assist",
    "assist_qa",
    "assist_session",
    "scale",
]


def _machine() -> str:
    import os

    import duckdb
    import pyarrow

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"- machine: {platform.node()} · {cpu} · {os.cpu_count()} cores\n"
        f"- Python {sys.version.split()[0]} · pyarrow {pyarrow.__version__} · "
        f"duckdb {duckdb.__version__} · {platform.platform()}\n"
        f"- run at {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n"
    )


def main() -> None:
    """Run the benchmarks named on the command line (all by default).

    ``--assemble`` runs none and only rewrites docs/benchmarks.md from docs/bench/.
    """
    args = sys.argv[1:]
    wanted = [] if args == ["--assemble"] else args or SECTIONS
    folder = Path("docs/bench")
    folder.mkdir(parents=True, exist_ok=True)
    for name in wanted:
        try:
            module = importlib.import_module(f"benchmarks.bench_{name}")
        except ModuleNotFoundError:
            print(f"== {name}: no benchmark yet", flush=True)
            continue
        print(f"== {name}", flush=True)
        body = module.run()
        (folder / f"{name}.md").write_text(
            f"{body}\n\nMeasured on:\n{_machine()}", encoding="utf-8"
        )
    parts = [
        "# Benchmarks\n",
        "Written by `make bench` (`python -m benchmarks.run [section ...]`); each section "
        "names the machine and versions it was measured on.\n",
    ]
    for name in SECTIONS:
        path = folder / f"{name}.md"
        if path.exists():
            parts.append(path.read_text(encoding="utf-8"))
    Path("docs/benchmarks.md").write_text("\n".join(parts), encoding="utf-8")
    print("wrote docs/benchmarks.md")


if __name__ == "__main__":
    main()
