"""Write grafana/generated/<name>.json (sorted keys) from grafana/dashboards/<name>.dashboard.py.

`python -m grafana.generate` rewrites every file; `--check` only compares and exits 1
when a generated file is missing, stale or has no source any more.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

from grafanalib._gen import DashboardEncoder

from pulse.fileio import write_atomic

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "dashboards"
GENERATED = HERE / "generated"
SUFFIX = ".dashboard.py"


def sources() -> dict[str, Path]:
    """Dashboard name -> its source file."""
    return {p.name[:-len(SUFFIX)]: p for p in sorted(SOURCES.glob(f"*{SUFFIX}"))}


def load(path: Path):
    """The module-level `dashboard` of one source file."""
    name = f"grafana.dashboards.{path.name[:-len(SUFFIX)]}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dashboard


def render(dashboard) -> str:
    """The JSON text Grafana provisions: sorted keys, two-space indent, final newline."""
    return json.dumps(dashboard.to_json_data(), cls=DashboardEncoder, sort_keys=True,
                      indent=2) + "\n"


def generate_all() -> dict[str, str]:
    """Dashboard name -> generated JSON text."""
    return {name: render(load(path)) for name, path in sources().items()}


def differences(out: Path = GENERATED) -> list[str]:
    """What differs between the sources and the files in `out` (empty when in sync)."""
    wanted = generate_all()
    problems = []
    for name, text in wanted.items():
        path = out / f"{name}.json"
        if not path.exists():
            problems.append(f"{path}: missing")
        elif path.read_text() != text:
            problems.append(f"{path}: differs from {SOURCES / (name + SUFFIX)}")
    for path in sorted(out.glob("*.json")):
        if path.stem not in wanted:
            problems.append(f"{path}: no source {SOURCES / (path.stem + SUFFIX)}")
    return problems


def write_all(out: Path = GENERATED) -> list[Path]:
    """Rewrite every generated file (temp + rename) and drop ones without a source."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    wanted = generate_all()
    for name, text in wanted.items():
        path = out / f"{name}.json"
        write_atomic(path, text)
        written.append(path)
    for path in out.glob("*.json"):
        if path.stem not in wanted:
            path.unlink()
    return written


def main(argv: list[str] | None = None) -> int:
    """Generate (default) or --check the dashboards."""
    parser = argparse.ArgumentParser(prog="python -m grafana.generate", description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on a diff")
    args = parser.parse_args(argv)
    if args.check:
        problems = differences()
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print("run `make dashboards` and commit grafana/generated/", file=sys.stderr)
        return 1 if problems else 0
    for path in write_all():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
