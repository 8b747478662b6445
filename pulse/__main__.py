"""`python -m pulse` is the `pulse` command."""

from pulse.launcher.cli import main

raise SystemExit(main())
