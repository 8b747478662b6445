"""The one configuration loader: YAML -> ${ENV} expansion -> schema with defaults -> frozen."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, FormatChecker, ValidationError, validators
from referencing import Registry, Resource

from pulse.paths import DEFAULT_CONFIG, SCHEMA_DIR

ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h|d|w|y)")


class ConfigError(Exception):
    """Every problem found in a configuration file, each with its location."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: {len(problems)} problem(s)"]
        lines += [f"  {path or '<root>'}: {message}" for path, message in problems]
        super().__init__("\n".join(lines))


class Config(Mapping):
    """A read-only mapping with attribute access; nested dicts and lists are frozen too."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]):
        object.__setattr__(self, "_data", {k: _freeze(v) for k, v in data.items()})

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __getattr__(self, key: str) -> Any:
        try:
            return self._data[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key: str, value: Any) -> None:
        raise TypeError("Config is read-only")

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Config({self._data!r})"

    def to_dict(self) -> dict[str, Any]:
        """A plain, mutable deep copy."""
        return _thaw(self)


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return Config(value)
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


def _with_defaults(base):
    """A validator class that also fills in each property's schema default."""
    validate_properties = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if name in instance:
                    continue
                if "default" in sub:
                    instance[name] = json.loads(json.dumps(sub["default"]))
                elif "$ref" in sub:
                    target = validator._resolver.lookup(sub["$ref"]).contents
                    if "default" in target:
                        instance[name] = json.loads(json.dumps(target["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    def unique_key(validator, key, instance, schema):
        # `x-unique-key: name` on an array: no two items may share item[name].
        if isinstance(instance, list):
            seen = set()
            for item in instance:
                value = item.get(key) if isinstance(item, dict) else None
                if value in seen:
                    yield ValidationError(f"duplicate {key} {value!r}: each must be unique")
                seen.add(value)

    return validators.extend(base, {"properties": set_defaults, "x-unique-key": unique_key})


_DefaultingValidator = _with_defaults(Draft202012Validator)


def schema_registry() -> Registry:
    """Every schema file beside pulse.schema.json, addressable by its file name."""
    resources = []
    for path in sorted(SCHEMA_DIR.glob("*.schema.json")):
        contents = json.loads(path.read_text())
        # Without $schema the referenced files are validated by our defaulting
        # validator; with it, jsonschema would switch to the stock class.
        dialect = contents.pop("$schema", None)
        resource = Resource.from_contents(contents, default_specification=_spec(dialect))
        resources.append((path.name, resource))
        resources.append((contents["$id"], resource))
    return Registry().with_resources(resources)


def _spec(dialect: str | None):
    from referencing.jsonschema import DRAFT202012, specification_with

    return specification_with(dialect) if dialect else DRAFT202012


def root_schema() -> dict:
    """The top-level JSON Schema of pulse.yml."""
    return json.loads((SCHEMA_DIR / "pulse.schema.json").read_text())


def expand_env(value: Any, env: Mapping[str, str], path: str = "",
               problems: list | None = None) -> Any:
    """Replace ${VAR} and ${VAR:-default} in every string; record unset variables."""
    if problems is None:
        problems = []
    if isinstance(value, dict):
        return {k: expand_env(v, env, _join(path, k), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, env, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    if isinstance(value, str):
        def sub(match: re.Match) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            problems.append((path, f"environment variable {name} is not set"))
            return ""
        return ENV_REF.sub(sub, value)
    return value


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _error_path(error) -> str:
    path = ""
    for part in error.absolute_path:
        path = f"{path}[{part}]" if isinstance(part, int) else _join(path, part)
    return path


def _describe(error) -> list[tuple[str, str]]:
    path = _error_path(error)
    if error.validator == "oneOf" and error.context:
        # Report the problems of the alternative whose shape matched (its errors lie
        # below the value), not that the value fits none of them.
        branches: dict[int, list] = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        matched = [errs for errs in branches.values() if all(e.relative_path for e in errs)]
        if len(matched) == 1:
            return [d for sub in matched[0] for d in _describe(sub)]
        return [(path, "expected one of: " + "; ".join(
            "{" + ", ".join(s["required"]) + ": ...}" if s.get("required") else
            f"a {s.get('type', 'value')}" for s in error.validator_value))]
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in allowed]
        if allowed or not extra:
            return [(_join(path, k), f"unknown key (allowed: {', '.join(sorted(allowed))})")
                    for k in extra]
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return [(_join(path, missing), "required key is missing")]
    if error.validator == "type":
        return [(path, f"expected {error.validator_value}, got {type(error.instance).__name__}"
                 f" ({error.instance!r})")]
    if error.validator == "pattern":
        # x-form: the form in words (host:port) where the regular expression says little.
        form = error.schema.get("x-form", error.validator_value)
        return [(path, f"{error.instance!r} does not match the expected form {form!r}")]
    return [(path, error.message)]


def _semantic_checks(data: dict) -> list[tuple[str, str]]:
    problems = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "listen" and isinstance(v, str) and ":" in v:
                    port = v.rsplit(":", 1)[1]
                    if port.isdigit() and not 1 <= int(port) <= 65535:
                        problems.append((_join(path, k), f"port {port} is out of range 1-65535"))
                walk(v, _join(path, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")

    walk(data, "")
    return problems


def validate(raw: Any, source: str = "<config>", env: Mapping[str, str] | None = None) -> Config:
    """Expand, default and validate a parsed document; raise ConfigError with every problem."""
    env = os.environ if env is None else env
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(source, [("", f"expected a mapping at the top level, got "
                                        f"{type(raw).__name__}")])
    problems: list[tuple[str, str]] = []
    data = expand_env(raw, env, "", problems)
    validator = _DefaultingValidator(root_schema(), registry=schema_registry(),
                                     format_checker=FormatChecker())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    env_paths = {path for path, _ in problems}
    for error in errors:
        # A value emptied by an unset variable is already reported once.
        problems.extend(d for d in _describe(error) if d[0] not in env_paths)
    problems.extend(_semantic_checks(data))
    if problems:
        raise ConfigError(source, problems)
    env_data_dir = env.get("PULSE_DATA_DIR")
    data["data_dir"] = str(Path(env_data_dir or data["data_dir"]).expanduser().resolve())
    return Config(data)


def load_config(path: str | os.PathLike | None = None,
                env: Mapping[str, str] | None = None) -> Config:
    """Load pulse.yml (PULSE_CONFIG, or the shipped default) and return it frozen."""
    env = os.environ if env is None else env
    path = Path(path or env.get("PULSE_CONFIG") or DEFAULT_CONFIG)
    source = str(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(source, [("", f"cannot read the file: {exc.strerror or exc}")]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(source, [(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")]) \
            from None
    return validate(raw, source, env)


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration such as '1h30m'."""
    if not text or DURATION_PART.sub("", text):
        raise ValueError(f"not a duration: {text!r}")
    return sum(int(n) * DURATION_UNITS[u] for n, u in DURATION_PART.findall(text))


def prometheus_urls(cfg: Config) -> list[str]:
    """Every Prometheus replica's URL: prometheus.urls, else url and the replicas after it."""
    prom = cfg.prometheus
    if prom.get("urls"):
        return list(prom.urls)
    base = prom.url.rstrip("/")
    if prom.get("replicas", 1) <= 1:
        return [base]
    host, port = url_host_port(base)
    scheme = base.split("://", 1)[0]
    return [f"{scheme}://{host}:{port + i}" for i in range(prom.replicas)]


def split_listen(listen: str) -> tuple[str, int]:
    """('127.0.0.1', 9090) from '127.0.0.1:9090'."""
    host, port = listen.rsplit(":", 1)
    return host.strip("[]"), int(port)


def url_host_port(url: str) -> tuple[str, int]:
    """The host and port an http(s) URL points at (default ports filled in)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)
