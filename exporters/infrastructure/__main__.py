"""Run the infrastructure exporter; `--collector.<name>` / `--no-collector.<name>` toggle one."""

import sys

from exporters.infrastructure import COLLECTORS, COMPONENT, create_app
from pulse.service import run_service


def split_collector_flags(argv: list[str]) -> tuple[dict[str, bool], list[str]]:
    """({collector: on/off}, remaining argv); exit 2 naming an unknown collector."""
    overrides, rest = {}, []
    for arg in argv:
        for prefix, value in (("--collector.", True), ("--no-collector.", False)):
            if arg.startswith(prefix):
                name = arg[len(prefix):]
                if name not in COLLECTORS:
                    print(f"{arg}: unknown collector {name!r} (known: "
                          f"{', '.join(COLLECTORS)})", file=sys.stderr)
                    raise SystemExit(2)
                overrides[name] = value
                break
        else:
            rest.append(arg)
    return overrides, rest


if __name__ == "__main__":
    flags, remaining = split_collector_flags(sys.argv[1:])
    run_service(COMPONENT, lambda cfg: create_app(cfg, overrides=flags),
                lambda cfg: cfg.exporters.infrastructure.listen, argv=remaining)
