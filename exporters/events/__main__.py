"""Run the events intake: `python -m exporters.events [--config pulse.yml] [--listen h:p]`."""

import sys

from exporters.events import COMPONENT, create_app
from exporters.events.mapping import MappingError
from exporters.events.store import StoreError
from pulse.config import listen_list
from pulse.log import register_secrets, setup
from pulse.service import config_secrets, load_or_exit, parse_args, serve


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
    serve(app, args.listen or listen_list(section.listen)[0], COMPONENT, threads=section.threads)


if __name__ == "__main__":
    main()
