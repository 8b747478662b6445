"""A fake Prometheus for the analytics engine's tests (metrics query, reports) and its clock."""

from __future__ import annotations

import re

NOW = 1_800_000_000.0


class FakeProm:
    """Answers range queries with one series per value of the grouped labels."""

    def __init__(self, values=None):
        self.queries: list[str] = []
        self.values = values or {"ios": 10.0, "android": 7.0, "web": 3.0}

    def query_range(self, expr, start, end, step):
        self.queries.append(expr)
        n = int(round((end - start) / step)) + 1
        by = re.search(r"by \(([^)]*)\)", expr)
        labels = [x.strip() for x in by.group(1).split(",") if x.strip() and x.strip() != "le"] \
            if by else []
        if not labels:
            return [{"metric": {}, "values": [[start + i * step, "20"] for i in range(n)]}]
        return [{"metric": {labels[0]: k, **{x: "x" for x in labels[1:]}},
                 "values": [[start + i * step, str(v)] for i in range(n)]}
                for k, v in self.values.items()]

    def query(self, expr, time=None):
        self.queries.append(expr)
        return []
