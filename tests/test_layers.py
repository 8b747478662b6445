"""The dependency rule of docs/architecture.md: an import may only point down a floor.

Floors, bottom to top: base, shared domain, services, launcher, build-time. Every
module's imports (lazy ones inside functions included) are read with `ast`, so a
failure names the module, the line and the import that breaks the rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pulse", "exporters", "bridge", "demo", "grafana")

BASE, DOMAIN, SERVICE, LAUNCHER, BUILD = range(5)
FLOOR_NAMES = {BASE: "base", DOMAIN: "shared domain", SERVICE: "services",
               LAUNCHER: "launcher", BUILD: "build-time"}
BASE_MODULES = ("pulse", "pulse.config", "pulse.log", "pulse.paths", "pulse.fileio",
                "pulse.promapi", "pulse.rfc3339", "pulse.service", "pulse.schema",
                "pulse.links", "pulse.access", "pulse.audit", "pulse.grants")
DOMAIN_MODULES = ("pulse.profiles", "pulse.dashboards")
LAUNCHER_MODULES = ("pulse.launcher", "pulse.__main__")
SERVICES = ("exporters", "bridge", "demo")
# The demo is a platform service instrumented with the Pulse middleware library: it
# may use the library's modules, and nothing else of another service.
ALLOWED_SIDEWAYS = {"demo": ("exporters.instrument", "exporters.ai.inference")}


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def floor(module: str) -> int | None:
    """The floor of a Pulse module (None for anything that is not Pulse)."""
    if any(_within(module, m) for m in LAUNCHER_MODULES):
        return LAUNCHER
    if any(_within(module, m) for m in DOMAIN_MODULES):
        return DOMAIN
    if module == "pulse" or any(_within(module, m) for m in BASE_MODULES[1:]):
        return BASE
    if any(_within(module, s) for s in SERVICES):
        return SERVICE
    if _within(module, "grafana"):
        return BUILD
    return None


def unit(module: str) -> str:
    """What a module may import freely within its floor: its own package (or service).

    Every exporter is a service of its own (exporters.events, exporters.ai, ...); the
    modules directly in exporters/ (instrument, scrape) are their shared library.
    """
    parts = module.split(".")
    if parts[0] == "exporters":
        return ".".join(parts[:2]) if len(parts) > 1 and _is_package(parts[:2]) else "exporters"
    if parts[0] == "pulse":
        return ".".join(parts[:2]) if len(parts) > 1 else "pulse"
    return parts[0]


def _is_package(parts: list[str]) -> bool:
    return (ROOT.joinpath(*parts) / "__init__.py").exists()


def allowed(importer: str, imported: str) -> bool:
    """True when importer may import imported under the dependency rule."""
    low, high = floor(imported), floor(importer)
    if low is None or high is None:
        return True
    if high == LAUNCHER:
        return low < BUILD
    if low == LAUNCHER:
        return False
    if high == BUILD:
        return low in (BASE, DOMAIN) or _within(imported, "grafana")
    if low > high:
        return False
    if low < high:
        return True
    if high == BASE:
        return True
    if high == DOMAIN:
        return unit(importer) == unit(imported)
    # Services: their own package, the exporters' shared library, the demo's exception.
    if unit(importer) == unit(imported):
        return True
    if importer.startswith("exporters.") and unit(imported) == "exporters":
        return True
    extra = ALLOWED_SIDEWAYS.get(importer.split(".")[0], ())
    return any(_within(imported, m) for m in extra)


def module_name(path: Path) -> str:
    """The dotted module name of a source file under ROOT."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(module: str, text: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in a module's source; `from a import b`
    yields a.b too when b is a module."""
    package = module if is_package else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(text, module)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((node.lineno, target))
            # `from pulse import launcher` imports the submodule pulse.launcher.
            out += [(node.lineno, f"{target}.{alias.name}") for alias in node.names
                    if _is_module(f"{target}.{alias.name}")]
    return out


def _is_module(dotted: str) -> bool:
    parts = dotted.split(".")
    return (ROOT.joinpath(*parts).with_suffix(".py").exists()
            or (ROOT.joinpath(*parts) / "__init__.py").exists())


def sources() -> list[Path]:
    """Every Python module of the Pulse packages (dashboard sources included)."""
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
                  if "generated" not in p.parts)


def violations(module: str, text: str, where: str, is_package: bool = False) -> list[str]:
    """One line per import of a module that points up or sideways: module, place, floors."""
    return [f"{module} ({where}:{line}) imports {imported}: {FLOOR_NAMES[floor(module)]} "
            f"may not import {FLOOR_NAMES[floor(imported)]} ({unit(imported)})"
            for line, imported in imports(module, text, is_package)
            if not allowed(module, imported)]


def test_every_import_points_down_a_floor():
    problems = [line for path in sources()
                for line in violations(module_name(path), path.read_text(),
                                       str(path.relative_to(ROOT)), path.name == "__init__.py")]
    assert not problems, "imports against the dependency rule:\n" + "\n".join(problems)


def test_every_pulse_module_has_a_floor():
    unplaced = [module_name(p) for p in sources() if floor(module_name(p)) is None]
    assert not unplaced, f"modules outside every floor: {unplaced}"


@pytest.mark.parametrize("importer, imported", [
    ("pulse.config", "pulse.profiles.store"),        # base -> domain: up
    ("pulse.fileio", "bridge.errors"),               # base -> service: up
    ("pulse.dashboards", "pulse.profiles"),          # domain -> domain: sideways
    ("pulse.profiles.store", "grafana.lib"),         # domain -> build-time: up
    ("bridge.rules", "exporters.events.mapping"),    # service -> service: sideways
    ("exporters.ai.store", "exporters.events.store"),  # one exporter -> another
    ("demo.app", "exporters.events.mapping"),        # beyond the demo's exception
    ("demo.app", "bridge.errors"),
    ("exporters.events", "pulse.launcher.render"),   # anything -> launcher
    ("bridge", "pulse.__main__"),
    ("pulse.dashboards", "grafana.lib"),             # runtime -> build-time
    ("grafana.lib", "bridge.errors"),                # build-time -> service
    ("grafana.generate", "pulse.launcher.cli"),
])
def test_the_rule_refuses(importer, imported):
    assert not allowed(importer, imported)


@pytest.mark.parametrize("importer, imported", [
    ("pulse.service", "pulse.config"),
    ("pulse.profiles.research", "pulse.profiles.store"),
    ("pulse.dashboards", "pulse.promapi"),
    ("bridge.datasets", "pulse.profiles.research"),
    ("exporters.infrastructure", "exporters.scrape"),
    ("demo.app", "exporters.instrument"),
    ("demo.app", "exporters.ai.inference"),
    ("pulse.launcher.cli", "exporters.events.mapping"),
    ("pulse.__main__", "pulse.launcher.cli"),
    ("grafana.lib", "pulse.dashboards"),
    ("bridge.api", "yaml"),
])
def test_the_rule_allows(importer, imported):
    assert allowed(importer, imported)


def test_a_violation_names_the_module_and_the_import():
    text = '"""A base module."""\n\ndef f():\n    from ..bridge.errors import ApiError\n'
    assert violations("pulse.config", text, "pulse/config.py") == [
        "pulse.config (pulse/config.py:4) imports bridge.errors: base may not import "
        "services (bridge)"]
