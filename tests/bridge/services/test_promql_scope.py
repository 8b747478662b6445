"""The coach scoping rewriter: every selector gets exactly coach="<id>", by promql-parser's
reading of the output and by real Prometheus's (format_query); conflicts and what it cannot
read are refused."""

import promql_parser as pp
import pytest
import requests

from bridge.services.errors import Forbidden, Invalid
from bridge.services.promql_scope import (
    MAX_DEPTH,
    MAX_OPERATORS,
    RAW_GUARD,
    Enforced,
    for_principal,
    parse,
    render,
    scope,
    scope_selector,
    selectors,
)
from pulse.access import Principal

COACH = Enforced("coach", "coach-1")

# Every node type and modifier the renderer knows, and the tricks of issue 18.
CORPUS = [
    "fitness_coach_clients_active",
    'fitness_coach_clients_active{coach="coach-1"}',
    'sum by (a) (rate(foo{a="x", b=~"y"}[5m] offset 1m @ 100))',
    'foo{a="\\"} or bar{b=\\""}',
    'foo{a="\\\\"} or bar{b="\\\\"}',
    "x{a=`raw\\x`}",
    "x{a='single\"q'}",
    'x{a="é\\n\\t\\u00e9"}',
    "x[10m:]",
    "rate(x[5m])[10m:]",
    "rate(x[5m])[10m:1m] offset 5m",
    "max_over_time(sum(rate(x[1m]))[30m:1m] @ end())",
    "x @ start()",
    "x offset -5m",
    "x[5m] offset 1m @ 1700000000.5",
    "a + on(b) group_left(c) d",
    "a * on() group_right() b",
    "a > bool 1",
    "a or b",
    "a unless ignoring(x) b",
    "a and on(coach) b",
    "a ^ b ^ c",
    "a - b - c",
    "(a + b) * c",
    "x - -1",
    "-x",
    "- -x",
    "a atan2 b",
    "topk(3, x)",
    "topk(scalar(y), x)",
    'count_values("coach", x)',
    "quantile without (a) (0.9, x)",
    "sum(x) without (a)",
    "sum by () (x)",
    '{__name__=~".+"}',
    '{__name__="fitness_coach_clients_active"}',
    'sum{a="1"}',
    'label_replace(up, "coach", "coach-2", "", "")',
    'label_join(x, "coach", ",", "a", "b")',
    "absent(nonexistent)",
    "absent_over_time(nonexistent[5m])",
    "round(abs(sum(rate(x[1m])) * 0 + sum(x)), 1)",
    'histogram_quantile(0.9, sum by (le) (rate(x_bucket{job="a"}[5m])))',
    "time()",
    "vector(1)",
    "scalar(x) + vector(time())",
    '"just a string"',
    "1e3",
    "Inf",
    "-Inf",
    "NaN",
    "sort_desc(x)",
    "x > 1 < 2",
]
# promql-parser reads `or` inside a selector; Prometheus 2.42 does not (it refuses the query).
OR_GROUPS = 'foo{a="1" or b="2"}'


def _only_the_coach(text: str, value: str = "coach-1") -> None:
    """Every selector of text (as promql-parser reads it) has exactly one coach matcher,
    coach="<value>", in each of its matcher groups."""
    found = 0
    for vs in selectors(pp.parse(text)):
        groups = vs.matchers.or_matchers or [vs.matchers.matchers]
        for group in groups:
            on_coach = [m for m in group if m.name == "coach"]
            assert [(m.op, m.value) for m in on_coach] == [(pp.MatchOp.Equal, value)], text
            found += 1
    assert found or not any(True for _ in selectors(pp.parse(text)))


@pytest.mark.parametrize("expr", [*CORPUS, OR_GROUPS])
def test_every_selector_has_exactly_the_coach_matcher(expr):
    out = scope(expr, COACH)
    _only_the_coach(out)
    assert scope(out, COACH) == out  # a fixed point: scoping twice changes nothing


def test_the_output_reads_as_the_input_did():
    assert scope('foo{a="\\"} or bar{b=\\""}', COACH) == \
        'foo{a="\\"} or bar{b=\\"", coach="coach-1"}'
    assert scope("rate(x[5m])[10m:]", COACH) == 'rate(x{coach="coach-1"}[5m])[10m:]'
    assert scope("a + on(b) group_left(c) d", COACH) == \
        'a{coach="coach-1"} + on (b) group_left (c) d{coach="coach-1"}'
    assert scope("a ^ b ^ c", COACH) == \
        'a{coach="coach-1"} ^ (b{coach="coach-1"} ^ c{coach="coach-1"})'
    assert scope("topk(3, x)", COACH) == \
        'topk (3.0, x{coach="coach-1"})'
    assert scope("x offset -5m @ end()", COACH) == 'x{coach="coach-1"} offset -5m @ end()'
    assert scope('sum{a="1"}', COACH) == '{__name__="sum", a="1", coach="coach-1"}'


def test_unscoped_rendering_keeps_the_query():
    assert render(parse("sum by (a) (x{b=\"c\"})"), None) == 'sum by (a) (x{b="c"})'
    assert render(parse("x"), None) == "x"


@pytest.mark.parametrize("matcher", [
    'coach="coach-2"', 'coach=~".*"', 'coach=~"coach-1|coach-2"', 'coach=~"coach-1"',
    'coach!="coach-1"', 'coach!~"x"', 'coach=""',
])
def test_a_conflicting_matcher_is_forbidden_and_named(matcher):
    for expr in (f"x{{{matcher}}}", f"sum(rate(x{{{matcher}}}[5m]))",
                 f"x or y{{{matcher}}}", f"x unless on() max_over_time(y{{{matcher}}}[5m:])"):
        with pytest.raises(Forbidden) as err:
            scope(expr, COACH, "query")
        detail = err.value.details[0]
        assert detail["field"] == "query" and matcher in detail["problem"], detail


@pytest.mark.parametrize(("expr", "problem"), [
    ("foo{", "parse error"),
    ("", "required"),
    ("(" * (MAX_DEPTH + 1) + "x" + ")" * (MAX_DEPTH + 1), "nested deeper"),
    ("x+" * (MAX_OPERATORS + 1) + "x", "operators"),
    ("-" * 1000 + "x", "operators"),
    ("x" * 20000, "longer than"),
    ("x @ -5", "cannot be read back"),
    ('x{a="\\q"}', "parse error"),
])
def test_what_cannot_be_read_safely_is_a_400_naming_the_field(expr, problem):
    with pytest.raises(Invalid) as err:
        scope(expr, COACH, "query")
    assert err.value.details[0]["field"] == "query"
    assert problem in err.value.details[0]["problem"]


def test_an_unknown_node_type_fails_closed():
    class Unknown:
        pass

    with pytest.raises(Invalid, match="not a query Pulse can scope") as err:
        render(Unknown(), COACH)
    assert "unsupported expression (Unknown)" in err.value.details[0]["problem"]


def test_strings_in_a_selector_cannot_end_it():
    # Each matcher value comes back as one string, whatever it holds.
    out = scope('x{a="\\"} or y{b=\\"", c="}"}', COACH)
    [vs] = list(selectors(pp.parse(out)))
    assert [m.value for m in vs.matchers.matchers if m.name != "coach"] == \
        ['"} or y{b="', "}"]


def test_series_selectors():
    assert scope_selector('{__name__=~".+"}', COACH) == '{__name__=~".+", coach="coach-1"}'
    with pytest.raises(Invalid) as err:
        scope_selector("sum(x)", COACH)
    assert err.value.details[0]["field"] == "match[]"


def test_only_coaches_are_scoped():
    coach = Principal("c", "coach", "coach-1")
    assert for_principal(coach, "x") == 'x{coach="coach-1"}'
    assert for_principal(coach, '{a="b"}') == \
        '{a="b", coach="coach-1", __name__!~"pulse_profiles_.*"}'
    for role in ("admin", "engineer", "analyst", "auditor"):
        assert for_principal(Principal("p", role), 'x{coach=~".*"}') == 'x{coach=~".*"}'
    with pytest.raises(Forbidden) as err:
        for_principal(Principal("c", "coach"), "x")
    assert err.value.details[0]["field"] == "coach_id"


def test_a_regex_choice_is_enforced_the_same_way():
    choice = Enforced("coach", "coach-2|coach-3", regex=True)
    assert scope("sum(x)", choice) == 'sum (x{coach=~"coach-2|coach-3"})'
    with pytest.raises(Forbidden):
        scope('x{coach="coach-1"}', choice)


@pytest.mark.integration
def test_real_prometheus_reads_every_output_as_scoped(prometheus_factory):
    """Prometheus's own parser (format_query) accepts every output, and what it reads back
    still has exactly coach="coach-1" on every selector."""
    prom = prometheus_factory()
    for expr in CORPUS:
        out = scope(expr, COACH)
        resp = requests.get(f"{prom.url}/api/v1/format_query", params={"query": out},
                            timeout=10)
        body = resp.json()
        assert body["status"] == "success", (expr, out, body)
        _only_the_coach(body["data"])
    # `or` inside a selector is promql-parser's; Prometheus 2.42 refuses the query whole.
    resp = requests.get(f"{prom.url}/api/v1/format_query",
                        params={"query": scope(OR_GROUPS, COACH)}, timeout=10)
    assert resp.status_code == 400


def _no_raw(text: str) -> None:
    """Every selector of text names a metric that is not raw, or carries the raw guard."""
    for vs in selectors(pp.parse(text)):
        if vs.name is not None:
            assert not vs.name.startswith("pulse_profiles_"), text
            continue
        for group in vs.matchers.or_matchers or [vs.matchers.matchers]:
            guard = [m for m in group
                     if m.name == "__name__" and m.op == pp.MatchOp.NotRe]
            assert [m.value for m in guard] == ["pulse_profiles_.*"], text


@pytest.mark.parametrize("expr", [*CORPUS, OR_GROUPS])
def test_every_unnamed_selector_gets_the_raw_guard(expr):
    for enforced in (RAW_GUARD, (COACH, RAW_GUARD)):
        out = scope(expr, enforced)
        _no_raw(out)
        assert scope(out, enforced) == out


def test_the_raw_guard_beside_a_name_and_the_coach():
    both = (COACH, RAW_GUARD)
    assert scope('{__name__=~".+"}', RAW_GUARD) == \
        '{__name__=~".+", __name__!~"pulse_profiles_.*"}'
    assert scope("rate(fitness_x[5m]) or {a=\"b\"}", both) == \
        'rate(fitness_x{coach="coach-1"}[5m]) or ' \
        '{a="b", coach="coach-1", __name__!~"pulse_profiles_.*"}'
    # A keyword name is a __name__ matcher: the guard fits beside it.
    assert scope('sum{a="1"}', RAW_GUARD) == \
        '{__name__="sum", a="1", __name__!~"pulse_profiles_.*"}'
    assert scope_selector("fitness_active_users", RAW_GUARD) == "fitness_active_users"
    # A regex with metacharacters narrows what the guard leaves (empty), never a 403.
    assert scope('{__name__=~"pulse_profiles_u.*"}', RAW_GUARD) == \
        '{__name__=~"pulse_profiles_u.*", __name__!~"pulse_profiles_.*"}'


@pytest.mark.parametrize("expr", [
    "pulse_profiles_users",
    'pulse_profiles_users{window="1d"}',
    "sum(rate(pulse_profiles_users[5m]))",
    "fitness_active_users or pulse_profiles_users",
    "x + on() group_left max_over_time(pulse_profiles_users[1h:5m])",
    '{__name__="pulse_profiles_users"}',
    '{__name__=~"pulse_profiles_users"}',
    'count({__name__="pulse_profiles_users", window="1d"})',
])
def test_naming_a_raw_series_is_forbidden_and_named(expr):
    for enforced in (RAW_GUARD, (COACH, RAW_GUARD)):
        with pytest.raises(Forbidden) as err:
            scope(expr, enforced)
        assert "pulse_profiles_users" in str(err.value)
        detail = err.value.details[0]
        assert detail["field"] == "query" and "k-anonymous" in detail["problem"]
    with pytest.raises(Forbidden):
        scope_selector("pulse_profiles_users", RAW_GUARD)


def test_every_role_but_admin_is_held_to_the_raw_guard():
    admin = Principal("a", "admin")
    assert for_principal(admin, "pulse_profiles_users") == "pulse_profiles_users"
    assert for_principal(admin, '{__name__=~".+"}') == '{__name__=~".+"}'
    for role in ("engineer", "analyst", "auditor", "executive"):
        p = Principal("p", role)
        assert for_principal(p, '{__name__=~".+"}') == \
            '{__name__=~".+", __name__!~"pulse_profiles_.*"}', role
        with pytest.raises(Forbidden):
            for_principal(p, "pulse_profiles_users")


@pytest.mark.integration
def test_real_prometheus_reads_every_guarded_output(prometheus_factory):
    """Prometheus's parser accepts the guard everywhere it is put (never a metric name set
    twice), and every selector it reads back is named or guarded."""
    prom = prometheus_factory()
    for expr in CORPUS:
        for enforced in (RAW_GUARD, (COACH, RAW_GUARD)):
            out = scope(expr, enforced)
            body = requests.get(f"{prom.url}/api/v1/format_query", params={"query": out},
                                timeout=10).json()
            assert body["status"] == "success", (expr, out, body)
            _no_raw(body["data"])
