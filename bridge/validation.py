"""The one request-body validator: every JSON body against its schema in bridge/openapi.

`BodyValidator` compiles the request-body schema of every operation of the published
OpenAPI document once (create_app builds it at start); `check(method, path, body)` raises
`Invalid` naming each bad field as `{field, problem}` (`condition.filters[0].value`,
`userId`, the unknown key itself for a key no schema allows). Views call `request_body()`,
which finds the operation of the request being served. What a schema cannot say (a
duplicated severity, a channel not configured) stays with the service that knows it.

The problems come in a stable order, the schema's own: by the position of each field's
properties in its schema (`properties` as written in the YAML; array items by index; a key
the schema does not name after those it names), so the first problem is the first bad field
of the schema, whatever order the client sent its keys in. Two extensions (x- keywords,
which JSON Schema ignores) let a schema keep the naming its clients rely on:
`x-one-field: true` reports a problem anywhere inside the value at the value itself (a label
map with a non-string value is `labels`, not `labels.a`); `x-problem: text` replaces the
validator's wording for a problem of that schema's own keywords.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from flask import request
from jsonschema import Draft202012Validator, FormatChecker

from bridge.openapi import document
from bridge.services.errors import Invalid, invalid

_PARAM = re.compile(r"<(?:[^:<>]+:)?[^<>]+>|\{[^{}]+\}")
MAX_PROBLEM = 300


def _route(path: str) -> str:
    """A path with its parameters blanked: Flask's <id> and OpenAPI's {id} compare equal."""
    return _PARAM.sub("{}", path)


def _name(parts) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def _draft2020(node: Any) -> Any:
    """An OpenAPI 3.0 schema in JSON Schema 2020-12 terms where the two differ in meaning:
    3.0's `exclusiveMinimum: true` beside `minimum: m` is 2020-12's `exclusiveMinimum: m`
    (read as is, True would be the bound 1); likewise for the maximum."""
    if isinstance(node, list):
        return [_draft2020(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _draft2020(v) for k, v in node.items()}
    for bound in ("minimum", "maximum"):
        flag = "exclusive" + bound.capitalize()
        if isinstance(out.get(flag), bool):
            if out.pop(flag) and bound in out:
                out[flag] = out.pop(bound)
    return out


class _Schema:
    """The root schema walked along an instance path: $ref, allOf/anyOf/oneOf followed."""

    def __init__(self, root: dict):
        self.root = root

    def deref(self, node):
        """node with its $ref chain followed (local refs: #/components/schemas/...)."""
        seen = 0
        while isinstance(node, dict) and "$ref" in node and seen < 32:
            target = self.root
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target.get(part, {}) if isinstance(target, dict) else {}
            node, seen = target, seen + 1
        return node if isinstance(node, dict) else {}

    def _branches(self, node):
        yield node
        for key in ("allOf", "anyOf", "oneOf"):
            for branch in node.get(key) or ():
                yield from self._branches(self.deref(branch))

    def step(self, node, part) -> tuple[int, dict]:
        """(position of part in node, the schema of node[part])."""
        for branch in self._branches(self.deref(node)):
            if isinstance(part, int):
                items = branch.get("items")
                if isinstance(items, dict):
                    return part, self.deref(items)
            else:
                props = branch.get("properties") or {}
                if part in props:
                    return list(props).index(part), self.deref(props[part])
                extra = branch.get("additionalProperties")
                if isinstance(extra, dict):
                    return len(props), self.deref(extra)
        return 1 << 20, {}

    def locate(self, parts: list) -> tuple[tuple[int, ...], int | None]:
        """(sort key of the path, the length of the prefix marked x-one-field, if any)."""
        node, key, cut = self.deref(self.root), [], None
        if node.get("x-one-field"):
            cut = 0
        for i, part in enumerate(parts):
            pos, node = self.step(node, part)
            key.append(pos)
            if cut is None and node.get("x-one-field"):
                cut = i + 1
        return tuple(key), cut


class BodyValidator:
    """The compiled request-body schema of every operation, by (method, path)."""

    def __init__(self, doc: dict):
        self._by_route: dict[tuple[str, str], Draft202012Validator] = {}
        components = _draft2020(doc.get("components") or {})  # once, shared by every route
        for path, ops in (doc.get("paths") or {}).items():
            for method, op in ops.items():
                content = ((op.get("requestBody") or {}).get("content") or {}) \
                    if isinstance(op, dict) else {}
                schema = (content.get("application/json") or {}).get("schema")
                if schema is None:
                    continue
                validator = Draft202012Validator(
                    {**_draft2020(schema), "components": components},
                    format_checker=FormatChecker())
                self._by_route[(method.upper(), _route(path))] = validator

    def has(self, method: str, path: str) -> bool:
        """True when the operation has a JSON request-body schema."""
        return (method.upper(), _route(path)) in self._by_route

    def problems(self, method: str, path: str, body: Any) -> list[dict]:
        """Every {field, problem} of body against the operation's schema, in schema order."""
        validator = self._by_route[(method.upper(), _route(path))]
        walk = _Schema(validator.schema)
        found = []
        for n, error in enumerate(validator.iter_errors(body)):
            # oneOf/anyOf errors are vague; name the best-matching branch's complaint.
            leaf = error
            if error.context:
                leaf = min(error.context, key=lambda e: (-len(e.absolute_path), str(e.message)))
            parts, msg = list(leaf.absolute_path), leaf.message
            if leaf.validator == "required" and isinstance(leaf.instance, dict):
                missing = [p for p in leaf.validator_value if p not in leaf.instance]
                if missing:
                    parts.append(min(missing, key=lambda p: walk.locate([*parts, p])[0]))
                    msg = "is required"
            if leaf.validator == "required" and error.validator == "anyOf":
                names = [b["required"][0] for b in error.validator_value if b.get("required")]
                parts = parts[:len(error.absolute_path)] + names[:1]
                msg = "either " + " or ".join(repr(n) for n in names) + " is required"
            if leaf.validator == "additionalProperties" and isinstance(leaf.instance, dict):
                allowed = sorted(leaf.schema.get("properties") or {})
                extra = sorted(str(k) for k in leaf.instance if k not in allowed)
                if extra:
                    parts.append(extra[0][:64])
                    msg = f"unknown field (allowed: {', '.join(allowed)})"
            if isinstance(leaf.schema, dict) and leaf.schema.get("x-problem"):
                msg = leaf.schema["x-problem"]
            order, cut = walk.locate(parts)
            if cut is not None:
                inner = _name(parts[cut:]) if cut < len(parts) else ""
                parts, msg = parts[:cut], (f"{inner}: {msg}" if inner else msg)
            if len(msg) > MAX_PROBLEM:
                msg = msg[:MAX_PROBLEM] + "..."
            # Schema order first; errors of one field keep the validator's (keyword) order.
            found.append((order, n, {"field": _name(parts), "problem": msg}))
        return [detail for _, _, detail in sorted(found, key=lambda f: (f[0], f[1]))]

    def check(self, method: str, path: str, body: Any,
              message: str = "the request body is invalid") -> Any:
        """body when it matches the operation's schema; else Invalid naming every bad field."""
        problems = self.problems(method, path, body)
        if problems:
            raise Invalid(message, problems)
        return body


@cache
def validator() -> BodyValidator:
    """The bridge's one validator, compiled on first use (create_app uses it at start)."""
    return BodyValidator(document())


def request_body(default: Any = ..., message: str = "the request body is invalid") -> Any:
    """The request's JSON body checked against its operation's schema.

    default: the body when none is sent (an optional request body); without it a missing
    or malformed body is Invalid naming `body`.
    """
    body = request.get_json(force=True, silent=True)
    if body is None:
        if request.get_data(cache=True).strip():
            raise invalid("the body is not valid JSON", "body", "malformed JSON")
        if default is ...:
            raise invalid("a JSON body is required", "body", "expected a JSON object")
        body = default
    rule = request.url_rule.rule if request.url_rule is not None else request.path
    return validator().check(request.method, rule, body, message)
