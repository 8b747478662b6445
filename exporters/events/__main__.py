"""Run the events intake: `python -m exporters.events [--config pulse.yml] [--listen h:p]`."""

import gc
import sys

from exporters.events import COMPONENT, create_app
from exporters.events.mapping import MappingError
from exporters.events.store import StoreError
from pulse.config import listen_list
from pulse.log import register_secrets, setup
from pulse.service import config_secrets, load_or_exit, parse_args, serve

# Measured under bench/ingest.py: with the default gen-0 threshold (700) a request's parsed
# events (~1,000 containers, alive ~10 ms) set off about one collection per request and
# were promoted to the old generations, whose full passes (53 a minute, up to 191 ms each,
# holding the GIL: every request and the log's writer waited) found nothing to free: the
# garbage here is freed by reference counting; cycles are rare (exceptions) and still freed.
GC_THRESHOLDS = (20_000, 10, 10)


def tune_gc() -> None:
    """Freeze what start-up built (modules, restored state) and raise the gen-0 threshold."""
    gc.collect()
    gc.freeze()  # never scanned again: the old generation's passes cover new objects only
    gc.set_threshold(*GC_THRESHOLDS)


def main(argv: list[str] | None = None) -> None:
    """Load the config and the mapping, restore the durable state, serve with waitress."""
    args = parse_args(COMPONENT, argv)
    cfg = load_or_exit(args.config)
    setup(COMPONENT, cfg.log_level)
    register_secrets(config_secrets(cfg))
    try:
        app = create_app(cfg)
    except (MappingError, StoreError) as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None
    section = cfg.exporters.events
    tune_gc()
    serve(app, args.listen or listen_list(section.listen)[0], COMPONENT, threads=section.threads)


if __name__ == "__main__":
    main()
