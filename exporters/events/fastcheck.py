"""A yes/no predicate compiled from the published event schema, for the hot path.

fastjsonschema builds a rich exception for every failure, which is what per-event errors need;
for the common case of a valid event a plain predicate is about three times faster. The
intake asks the predicate first and, only when it says no, runs fastjsonschema for the error
(fastjsonschema stays the authority: if it accepts what the predicate refused, the event is
accepted). The predicate supports the keywords the schema uses; any other keyword makes
`compile_predicate` return None and the intake uses fastjsonschema alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastjsonschema.draft04 import CodeGeneratorDraft04

IGNORED = {"$schema", "$id", "title", "description", "default", "examples", "$comment"}
TYPES = {"string": "str", "number": None, "integer": "int", "boolean": "bool",
         "object": "dict", "array": "list", "null": "NoneType"}


class Unsupported(Exception):
    """The schema uses a keyword the predicate compiler does not know."""


class _Compiler:
    def __init__(self):
        self.consts: dict[str, Any] = {
            "_MISSING": object(), "NoneType": type(None),
            "_DATE_TIME": re.compile(CodeGeneratorDraft04.FORMAT_REGEXS["date-time"])}
        self.lines: list[str] = []
        self.count = 0

    def const(self, value: Any) -> str:
        self.count += 1
        name = f"_C{self.count}"
        self.consts[name] = value
        return name

    def var(self) -> str:
        self.count += 1
        return f"v{self.count}"

    def emit(self, indent: int, text: str) -> None:
        self.lines.append("    " * indent + text)

    def node(self, schema: dict, var: str, indent: int) -> None:
        unknown = set(schema) - IGNORED - {"type", "enum", "minLength", "maxLength", "format",
                                            "properties", "required", "additionalProperties"}
        if unknown:
            raise Unsupported(f"keywords {sorted(unknown)}")
        types = schema.get("type")
        if types is not None:
            names = [types] if isinstance(types, str) else list(types)
            checks = []
            for name in names:
                if name == "number":
                    checks += [f"{var}.__class__ is not int", f"{var}.__class__ is not float"]
                elif name in TYPES:
                    checks.append(f"{var}.__class__ is not {TYPES[name]}")
                else:
                    raise Unsupported(f"type {name}")
            self.emit(indent, f"if {' and '.join(checks)}: return False")
        if "enum" in schema:
            values = schema["enum"]
            if not all(isinstance(v, str) for v in values):
                raise Unsupported("non-string enum")
            self.emit(indent, f"if {var}.__class__ is not str or {var} not in "
                              f"{self.const(frozenset(values))}: return False")
        if {"minLength", "maxLength", "format"} & set(schema):
            if types != "string":
                raise Unsupported("string keywords without type string")
            low, high = schema.get("minLength", 0), schema.get("maxLength")
            if high is not None:
                self.emit(indent, f"if not {low} <= len({var}) <= {high}: return False")
            elif low:
                self.emit(indent, f"if len({var}) < {low}: return False")
            fmt = schema.get("format")
            if fmt is not None:
                if fmt != "date-time":
                    raise Unsupported(f"format {fmt}")
                self.emit(indent, f"if not _DATE_TIME.match({var}): return False")
        if {"properties", "required", "additionalProperties"} & set(schema):
            if types != "object":
                raise Unsupported("object keywords without type object")
            required = schema.get("required", [])
            props = schema.get("properties", {})
            if required:
                self.emit(indent, f"if not {self.const(frozenset(required))} <= {var}.keys(): "
                                  "return False")
            extra = schema.get("additionalProperties", True)
            if extra is False:
                self.emit(indent, f"if not {var}.keys() <= {self.const(frozenset(props))}: "
                                  "return False")
            elif extra is not True:
                raise Unsupported("additionalProperties schema")
            for key, sub in props.items():
                child = self.var()
                self.emit(indent, f"{child} = {var}.get({key!r}, _MISSING)")
                self.emit(indent, f"if {child} is not _MISSING:")
                before = len(self.lines)
                self.node(sub, child, indent + 1)
                if len(self.lines) == before:
                    self.emit(indent + 1, "pass")


def compile_predicate(schema: dict) -> Callable[[Any], bool] | None:
    """A function telling whether a value certainly satisfies schema (None: unsupported)."""
    compiler = _Compiler()
    try:
        compiler.node(schema, "data", 1)
    except Unsupported:
        return None
    source = "def check(data):\n" + "\n".join(compiler.lines) + "\n    return True\n"
    namespace = dict(compiler.consts)
    exec(compile(source, "<event-schema-predicate>", "exec"), namespace)  # noqa: S102
    return namespace["check"]
