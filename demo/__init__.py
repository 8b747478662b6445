"""The demo fitness platform: an instrumented API and a traffic simulator."""
