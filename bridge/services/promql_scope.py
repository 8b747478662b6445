"""Coach scoping enforced by the query itself: `coach="<id>"` on every selector of the PromQL.

prom-label-proxy's semantics (injectproxy/enforce.go, with -error-on-replace): the query is
parsed (promql-parser, the Rust port of Prometheus's parser), the enforced matcher goes into
every VectorSelector (the one inside a MatrixSelector, inside subqueries, calls, aggregations,
both sides of every binary operator, each `or` group of a selector), and a matcher on the
label that is not exactly the enforced one is a `Forbidden` naming it, never a silent
override. Series without the label are then invisible to the scoped principal.

The same injection hides the raw profile series (`pulse_profiles_*`: additive counts, groups
under k included, that rules/profiles.rules.yml sums and publishes k-anonymously) from every
principal without `prometheus:raw` (admin only): `__name__!~"pulse_profiles_.*"` goes into
every selector that does not name its metric, so `{__name__=~".+"}`, regexes and `or`/
`unless` cannot reach them, and a selector naming one (`pulse_profiles_users`,
`{__name__="pulse_profiles_users"}`) is a `Forbidden` naming it (docs/profiles.md).

The expression is written back by this module's own renderer, never by promql-parser's
`str()`: that one drops string escapes (`foo{a="\\"} or bar{b=\\""}` would come back as two
selectors, one of them unscoped) and a subquery's default step. Every node type is rendered
by one branch; any other type raises, so an expression this module does not understand is
refused (fails closed). Strings are written with JSON escapes, which are valid PromQL ones.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import promql_parser as pp

from bridge.services.errors import Forbidden, ServiceError, invalid

# The label a coach principal is scoped by (docs/bridge.md, "Coach scoping").
COACH_LABEL = "coach"
# The raw, not k-anonymous profile series (pulse.profiles.aggregates) and the permission that
# may read them through the bridge (pulse.access: admin only).
RAW_PREFIX = "pulse_profiles_"
RAW_PERMISSION = "prometheus:raw"
METRIC_LABEL = "__name__"
# Limits checked before the parser sees the text: promql-parser's time grows with the square
# of a chain of operators (2,000 take over a second) and a deep nesting overflows its stack
# (the process dies), so neither may reach it.
MAX_LENGTH = 16_384
MAX_DEPTH = 64
MAX_OPERATORS = 512
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
FUNCTION_NAME = re.compile(r"[a-z_][a-z0-9_]*")
# Words Prometheus's lexer reads as keywords: a metric of that name is written as a
# __name__ matcher instead, so it cannot be read back as an operator or aggregation.
KEYWORDS = {"and", "or", "unless", "atan2", "by", "without", "on", "ignoring", "group_left",
            "group_right", "bool", "offset", "start", "end", "inf", "nan", "sum", "avg",
            "count", "min", "max", "group", "stddev", "stdvar", "topk", "bottomk",
            "count_values", "quantile", "limitk", "limit_ratio"}
BINARY_OPS = {"+", "-", "*", "/", "%", "^", "==", "!=", ">", "<", ">=", "<=", "and", "or",
              "unless", "atan2"}
# promql-parser's enums are not hashable: these are (member, text) pairs, read by _pick.
MATCH_OPS = ((pp.MatchOp.Equal, "="), (pp.MatchOp.NotEqual, "!="), (pp.MatchOp.Re, "=~"),
             (pp.MatchOp.NotRe, "!~"))
AGG_MODIFIERS = ((pp.AggModifierType.By, "by"), (pp.AggModifierType.Without, "without"))
MATCHING = ((pp.LabelModifierType.Include, "on"), (pp.LabelModifierType.Exclude, "ignoring"))
GROUPING = ((pp.VectorMatchCardinality.ManyToOne, "group_left"),
            (pp.VectorMatchCardinality.OneToMany, "group_right"),
            (pp.VectorMatchCardinality.OneToOne, ""), (pp.VectorMatchCardinality.ManyToMany, ""))


def _pick(member, pairs) -> str | None:
    return next((text for m, text in pairs if m == member), None)


@dataclass(frozen=True)
class Enforced:
    """The matcher a principal is held to: label = value (or =~ a regex, for a choice);
    negated (!=, !~), what it matches is hidden instead."""

    label: str
    value: str
    regex: bool = False
    negate: bool = False
    # Why a negated matcher hides what it does (the problem of a Forbidden naming a series).
    why: str = ""

    def text(self) -> str:
        """The matcher as PromQL."""
        op = {(False, False): "=", (False, True): "=~", (True, False): "!=",
              (True, True): "!~"}[(self.negate, self.regex)]
        return f"{self.label}{op}{quote(self.value)}"

    def hides(self, value: str) -> bool:
        """True when a negated matcher hides the series whose label is exactly value."""
        if not self.negate:
            return False
        return bool(re.fullmatch(self.value, value)) if self.regex else value == self.value


# Added to every selector of a principal without RAW_PERMISSION.
RAW_GUARD = Enforced(
    METRIC_LABEL, re.escape(RAW_PREFIX) + ".*", regex=True, negate=True,
    why="raw pulse_profiles_* series count groups under k and are read by admin only; "
        "query the published, k-anonymous fitness_* series instead (docs/profiles.md)")
# What a principal's selectors are held to: one matcher, several, or none.
Scope = Enforced | tuple[Enforced, ...] | None


def _all(enforced: Scope) -> tuple[Enforced, ...]:
    if enforced is None:
        return ()
    return (enforced,) if isinstance(enforced, Enforced) else tuple(enforced)


def quote(value: str) -> str:
    """A PromQL double-quoted string (JSON's escapes are all valid Go/PromQL escapes)."""
    return json.dumps(value, ensure_ascii=False)


def _fail(field: str, problem: str):
    return invalid(f"{field} is not a query Pulse can scope", field, problem)


def precheck(text: str, field: str = "query") -> None:
    """Refuse (Invalid naming the field) text too long, too deep or with too many operators
    for the parser to be given safely."""
    if not isinstance(text, str) or not text.strip():
        raise _fail(field, "a PromQL expression is required")
    if len(text) > MAX_LENGTH:
        raise _fail(field, f"longer than {MAX_LENGTH} characters")
    depth = deepest = operators = 0
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "\"'`":
            # Skip the string literal (escapes included) so its content counts for nothing.
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if c != "`" and text[j] == "\\" else 1
            i = j + 1
            continue
        if c in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in ")]}":
            depth -= 1
        elif c in "+-*/%^<>=!":
            operators += 1
        elif c.isalpha() and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] in "_:")):
            word = re.match(r"[A-Za-z_][A-Za-z0-9_:]*", text[i:]).group(0)
            operators += word.lower() in ("and", "or", "unless", "atan2")
            i += len(word)
            continue
        i += 1
    if deepest > MAX_DEPTH:
        raise _fail(field, f"nested deeper than {MAX_DEPTH} levels")
    if operators > MAX_OPERATORS:
        raise _fail(field, f"more than {MAX_OPERATORS} operators")


def parse(text: str, field: str = "query"):
    """The promql-parser AST of text; Invalid naming the field when it does not parse."""
    precheck(text, field)
    try:
        return pp.parse(text)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: B036 - pyo3's PanicException is a BaseException
        raise invalid(f"{field} is not valid PromQL", field,
                      f"parse error: {str(exc)[:300]}") from None


def scope(text: str, enforced: Scope, field: str = "query") -> str:
    """text with the enforced matchers on every selector (Forbidden on a conflicting one)."""
    return render(parse(text, field), enforced, field)


def scope_selector(text: str, enforced: Scope, field: str = "match[]") -> str:
    """A series selector (series/labels `match[]`) with the enforced matcher; anything but a
    plain selector is Invalid naming the field."""
    node = parse(text, field)
    if not isinstance(node, pp.VectorSelector):
        raise invalid(f"{field} must be a series selector", field,
                      f"{text[:80]!r} is not a selector like name{{label=\"value\"}}")
    return render(node, enforced, field)


def coach_scope(principal) -> Enforced | None:
    """The matcher a principal is held to: coach="<coach_id>" for a coach, None otherwise
    (Forbidden for a coach token without a coach_id)."""
    if principal.role != "coach":
        return None
    if not principal.coach_id:
        raise Forbidden("this coach token carries no coach_id",
                        [{"field": "coach_id", "problem": "required for the coach role"}])
    return Enforced(COACH_LABEL, principal.coach_id)


def raw_guard(principal) -> Enforced | None:
    """RAW_GUARD for a principal without RAW_PERMISSION, None for one holding it (admin)."""
    return None if principal.can(RAW_PERMISSION) else RAW_GUARD


def principal_scope(principal) -> tuple[Enforced, ...]:
    """Every matcher a principal's selectors get: the coach's and the raw-series guard."""
    return tuple(e for e in (coach_scope(principal), raw_guard(principal)) if e is not None)


def for_principal(principal, text: str, field: str = "query") -> str:
    """text as the principal may run it: scoped (coach, raw guard); as is for admin."""
    enforced = principal_scope(principal)
    return scope(text, enforced, field) if enforced else text


# -- the renderer --------------------------------------------------------------------
def render(node, enforced: Scope, field: str = "query") -> str:
    """PromQL text of an AST, with the enforced matchers on every selector (None: as is)."""
    try:
        return _Renderer(enforced, field).expr(node)
    except (ServiceError, KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: B036 - reading a node can panic (`@ -5`), fail closed
        raise _fail(field, f"cannot be read back: {str(exc)[:200]}") from None


def selectors(node) -> Iterator:
    """Every VectorSelector of an AST (those inside matrix selectors included)."""
    if isinstance(node, pp.VectorSelector):
        yield node
    elif isinstance(node, pp.MatrixSelector):
        yield node.vector_selector
    elif isinstance(node, pp.AggregateExpr):
        if node.param is not None:
            yield from selectors(node.param)
        yield from selectors(node.expr)
    elif isinstance(node, pp.BinaryExpr):
        yield from selectors(node.lhs)
        yield from selectors(node.rhs)
    elif isinstance(node, pp.Call):
        for arg in node.args:
            yield from selectors(arg)
    elif isinstance(node, pp.ParenExpr | pp.UnaryExpr | pp.SubqueryExpr):
        yield from selectors(node.expr)


class _Renderer:
    def __init__(self, enforced: Scope, field: str):
        self.enforced = _all(enforced)
        self.field = field

    def refuse(self, problem: str):
        return _fail(self.field, problem)

    def hidden(self, e: Enforced, name: str):
        return Forbidden(f"series {name[:80]} is not readable with this token",
                         [{"field": self.field,
                           "problem": f"{name[:80]} matches the hidden {e.text()}: "
                                      f"{e.why or 'not readable with this token'}"}])

    def drops(self, e: Enforced, name: str, op: str, value: str, text: str) -> bool:
        """True when a user matcher is the enforced one (added once, later); Forbidden when
        it conflicts with it or names a series it hides."""
        if name != e.label:
            return False
        if text == e.text():
            return True
        if e.negate:
            # Matchers may narrow what a negated matcher leaves; naming what it hides (a
            # regex without metacharacters names one series too) is a 403.
            literal = op == "=" or (op == "=~" and re.escape(value) == value)
            if literal and e.hides(value):
                raise self.hidden(e, value)
            return False
        raise Forbidden(
            f"label matcher {text} conflicts with the enforced {e.text()}",
            [{"field": self.field,
              "problem": f"the matcher {text} is not allowed: this token sees only "
                         f"{e.text()}"}])

    def expr(self, node) -> str:
        if isinstance(node, pp.VectorSelector):
            return self.vector(node) + self.modifiers(node.offset, node.at)
        if isinstance(node, pp.MatrixSelector):
            vs = node.vector_selector
            return (f"{self.vector(vs)}[{self.duration(node.range)}]"
                    + self.modifiers(vs.offset, vs.at))
        if isinstance(node, pp.SubqueryExpr):
            step = self.duration(node.step) if node.step is not None else ""
            return (f"{self.operand(node.expr)}[{self.duration(node.range)}:{step}]"
                    + self.modifiers(node.offset, node.at))
        if isinstance(node, pp.ParenExpr):
            return f"({self.expr(node.expr)})"
        if isinstance(node, pp.UnaryExpr):
            return f"-{self.operand(node.expr)}"
        if isinstance(node, pp.NumberLiteral):
            return self.number(node.val)
        if isinstance(node, pp.StringLiteral):
            return quote(node.val)
        if isinstance(node, pp.Call):
            name = node.func.name
            if not FUNCTION_NAME.fullmatch(name):
                raise self.refuse(f"unknown function {name[:40]!r}")
            return f"{name}({', '.join(self.expr(a) for a in node.args)})"
        if isinstance(node, pp.AggregateExpr):
            return self.aggregate(node)
        if isinstance(node, pp.BinaryExpr):
            return self.binary(node)
        # Fails closed, as prom-label-proxy does: what is not understood is not run.
        raise self.refuse(f"unsupported expression ({type(node).__name__})")

    def operand(self, node) -> str:
        # Operators and negative numbers are bracketed, so precedence and associativity
        # are exactly the parsed tree's when Prometheus reads the text back.
        text = self.expr(node)
        if isinstance(node, pp.BinaryExpr | pp.UnaryExpr | pp.SubqueryExpr) or (
                isinstance(node, pp.NumberLiteral) and text.startswith("-")):
            return f"({text})"
        return text

    def number(self, value: float) -> str:
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Inf" if value > 0 else "-Inf"
        return repr(float(value))

    def duration(self, value: timedelta) -> str:
        if value <= timedelta(0):
            raise self.refuse("durations must be positive")
        return pp.display_duration(value)

    def modifiers(self, offset: timedelta | None, at) -> str:
        out = ""
        if offset is not None:
            sign = "-" if offset < timedelta(0) else ""
            out += f" offset {sign}{pp.display_duration(abs(offset))}"
        if at is not None:
            if at.type == pp.AtModifierType.Start:
                out += " @ start()"
            elif at.type == pp.AtModifierType.End:
                out += " @ end()"
            elif at.type == pp.AtModifierType.At:
                out += f" @ {at.at.timestamp():.3f}"
            else:
                raise self.refuse("unsupported @ modifier")
        return out

    def labels(self, names) -> str:
        for name in names:
            if not LABEL_NAME.fullmatch(name):
                raise self.refuse(f"bad label name {name[:40]!r}")
        return f"({', '.join(names)})"

    def matchers(self, group, named: bool) -> list[str]:
        out = []
        for m in group:
            if not LABEL_NAME.fullmatch(m.name):
                raise self.refuse(f"bad label name {m.name[:40]!r}")
            op = _pick(m.op, MATCH_OPS)
            if op is None:
                raise self.refuse(f"unsupported matcher operator on {m.name}")
            text = f"{m.name}{op}{quote(m.value)}"
            # Not `any(...)`: every enforced matcher must see it (each may refuse it).
            if [e for e in self.enforced if self.drops(e, m.name, op, m.value, text)]:
                continue  # identical to an enforced one: it is added once below
            out.append(text)
        for e in self.enforced:
            # Prometheus refuses a __name__ matcher beside a metric name (set twice); the
            # name itself was checked against the enforced matcher by vector().
            if not (named and e.label == METRIC_LABEL):
                out.append(e.text())
        return out

    def vector(self, vs) -> str:
        name = vs.name
        head = []
        prefix = ""
        if name is not None:
            for e in self.enforced:
                if e.label == METRIC_LABEL and e.hides(name):
                    raise self.hidden(e, name)
            if METRIC_NAME.fullmatch(name) and name.lower() not in KEYWORDS:
                prefix = name
            else:
                head = [f"__name__={quote(name)}"]
        groups = [list(vs.matchers.matchers)] if not vs.matchers.or_matchers \
            else [list(g) for g in vs.matchers.or_matchers]
        rendered = [", ".join(head + self.matchers(g, bool(prefix))) for g in groups]
        if not any(rendered):
            if not prefix:
                raise self.refuse("a selector needs a metric name or a matcher")
            return prefix
        return prefix + "{" + " or ".join(rendered) + "}"

    def aggregate(self, node) -> str:
        op = str(node.op)
        if not FUNCTION_NAME.fullmatch(op):
            raise self.refuse(f"unknown aggregation {op[:40]!r}")
        grouping = ""
        if node.modifier is not None:
            kind = node.modifier.type
            word = _pick(kind, AGG_MODIFIERS)
            if word is None:
                raise self.refuse("unsupported aggregation modifier")
            grouping = f" {word} {self.labels(node.modifier.labels)}"
        args = ([self.expr(node.param)] if node.param is not None else []) \
            + [self.expr(node.expr)]
        return f"{op}{grouping} ({', '.join(args)})"

    def binary(self, node) -> str:
        op = str(node.op)
        if op not in BINARY_OPS:
            raise self.refuse(f"unknown operator {op[:40]!r}")
        parts = [self.operand(node.lhs), op]
        mod = node.modifier
        if mod is not None:
            fill = mod.fill_values
            if fill is not None and (fill.lhs is not None or fill.rhs is not None):
                raise self.refuse("fill modifiers are not supported")
            if mod.return_bool:
                parts.append("bool")
            if mod.matching is not None:
                word = _pick(mod.matching.type, MATCHING)
                if word is None:
                    raise self.refuse("unsupported vector matching")
                parts.append(word + " " + self.labels(mod.matching.labels))
            if op not in ("and", "or", "unless"):
                side = _pick(mod.card, GROUPING)
                if side is None:
                    raise self.refuse("unsupported vector matching cardinality")
                if side:
                    parts.append(side + " " + self.labels(mod.group_labels or []))
        parts.append(self.operand(node.rhs))
        return " ".join(parts)
