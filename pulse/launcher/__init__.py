"""The launcher: `pulse` starts every component as a process (imported by nothing but tests)."""
