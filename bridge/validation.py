"""The one request-body validator: every JSON body against its schema in bridge/openapi.

`BodyValidator` compiles the request-body schema of every operation of the published
OpenAPI document once (create_app builds it at start); `check(method, path, body)` raises
`Invalid` naming each bad field as `{field, problem}` (`condition.filters[0].value`,
`userId`, the unknown key itself for a key no schema allows). Views call `request_body()`,
which finds the operation of the request being served. What a schema cannot say (a
duplicated severity, a channel not configured) stays with the service that knows it.
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


def _field(error) -> str:
    out = ""
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def _join(where: str, key: str) -> str:
    return key if where == "body" else f"{where}.{key}"


class BodyValidator:
    """The compiled request-body schema of every operation, by (method, path)."""

    def __init__(self, doc: dict):
        self._by_route: dict[tuple[str, str], Draft202012Validator] = {}
        components = doc.get("components") or {}
        for path, ops in (doc.get("paths") or {}).items():
            for method, op in ops.items():
                content = ((op.get("requestBody") or {}).get("content") or {}) \
                    if isinstance(op, dict) else {}
                schema = (content.get("application/json") or {}).get("schema")
                if schema is None:
                    continue
                validator = Draft202012Validator({**schema, "components": components},
                                                 format_checker=FormatChecker())
                self._by_route[(method.upper(), _route(path))] = validator

    def has(self, method: str, path: str) -> bool:
        """True when the operation has a JSON request-body schema."""
        return (method.upper(), _route(path)) in self._by_route

    def problems(self, method: str, path: str, body: Any) -> list[dict]:
        """Every {field, problem} of body against the operation's schema (sorted by field)."""
        validator = self._by_route[(method.upper(), _route(path))]
        details = []
        for error in sorted(validator.iter_errors(body), key=lambda e: list(map(str, e.path))):
            # oneOf/anyOf errors are vague; name the best-matching branch's complaint.
            leaf = error
            if error.context:
                leaf = min(error.context, key=lambda e: (-len(e.absolute_path), str(e.message)))
            msg, field = leaf.message, _field(leaf)
            if leaf.validator == "required" and isinstance(leaf.instance, dict):
                missing = [p for p in leaf.validator_value if p not in leaf.instance]
                if missing:
                    field, msg = _join(field, missing[0]), "is required"
            if leaf.validator == "required" and error.validator == "anyOf":
                names = [b["required"][0] for b in error.validator_value if b.get("required")]
                field = names[0] if names else field
                msg = "either " + " or ".join(repr(n) for n in names) + " is required"
            if leaf.validator == "additionalProperties" and isinstance(leaf.instance, dict):
                allowed = sorted(leaf.schema.get("properties") or {})
                extra = sorted(str(k) for k in leaf.instance if k not in allowed)
                if extra:
                    field = _join(field, extra[0][:64])
                    msg = f"unknown field (allowed: {', '.join(allowed)})"
            if len(msg) > MAX_PROBLEM:
                msg = msg[:MAX_PROBLEM] + "..."
            details.append({"field": field, "problem": msg})
        return details

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
