"""Local evaluation of alert rules against the in-process history: a small subset of PromQL. Pure.

Without Prometheus the gateway still evaluates the rules made through /api/config/alerts, as far
as the history can answer them: the request counters it exports, over the requests it kept.

    rule     := vector OP number                  OP: > >= < <= == !=
    vector   := "sum" "(" inner ")" | inner
    inner    := ("rate" | "increase") "(" selector "[" duration "]" ")" | selector
    selector := metric [ "{" label MATCH "string" ("," ...)* "}" ]    MATCH: = != =~ !~

metric is `conch_http_requests_total` (labels method, route, status) or
`conch_model_requests_total` (model, route, status). As in Prometheus, each label set is a series
and the rule holds for every series whose value passes the comparison (`sum` makes one series);
a bare counter is the count of kept requests, `increase` the count inside the range, `rate` that
count per second. Anything else (latency histograms, other functions) is left to Prometheus:
`parse` returns None and the rule is not evaluated locally."""

from __future__ import annotations

import operator
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Sequence

from .history import Sample

METRICS: dict[str, tuple[str, ...]] = {
    "conch_http_requests_total": ("method", "route", "status"),
    "conch_model_requests_total": ("model", "route", "status"),
}
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne}
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_TOKEN = re.compile(r'\s*(?:(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)|(?P<string>"(?:[^"\\]|\\.)*")'
                    r"|(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|(?P<range>\[\s*(?:\d+(?:ms|[smhdwy]))+\s*\])"
                    r"|(?P<op>=~|!~|>=|<=|==|!=|[(){},<>=]))")


def duration_s(text: str) -> float:
    """A Prometheus duration (1h30m, 500ms) in seconds."""
    return sum(int(n) * _UNITS[u] for n, u in re.findall(r"(\d+)(ms|[smhdwy])", text))


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str

    def matches(self, actual: str) -> bool:
        if self.op in ("=", "!="):
            return (actual == self.value) == (self.op == "=")
        return bool(re.fullmatch(self.value, actual)) == (self.op == "=~")  # anchored, as in PromQL


@dataclass(frozen=True)
class LocalRule:
    metric: str
    matchers: tuple[Matcher, ...]
    function: str | None  # None (the counter), "rate" or "increase"
    range_s: float | None
    summed: bool
    compare: str
    threshold: float

    def evaluate(self, samples: Sequence[Sample], now: float) -> dict[tuple[tuple[str, str], ...], float]:
        """{series labels: value} of the series for which the rule holds at `now`."""
        names = METRICS[self.metric]
        series: dict[tuple[tuple[str, str], ...], float] = defaultdict(float)
        since = now - self.range_s if self.range_s is not None else float("-inf")
        for sample in samples:
            if self.metric == "conch_model_requests_total" and sample.model is None:
                continue  # that counter has no series for requests without a model
            labels = _labels(sample)
            if not all(m.matches(labels.get(m.label, "")) for m in self.matchers):
                continue
            key = () if self.summed else tuple((n, labels[n]) for n in names)
            series[key] += 1 if since <= sample.at <= now else 0  # a series seen earlier still exists (0)
        if self.function == "rate":
            series = {k: v / self.range_s for k, v in series.items()}
        compare = _COMPARE[self.compare]
        return {k: v for k, v in series.items() if compare(v, self.threshold)}


def _labels(sample: Sample) -> dict[str, str]:
    return {"method": sample.method, "route": sample.key, "status": str(sample.status), "model": sample.model or ""}


class _Unsupported(ValueError):
    pass


def parse(expr: str) -> LocalRule | None:
    """The rule in the subset above, or None when only Prometheus can evaluate it."""
    try:
        tokens = _tokens(expr)
        return _Parser(tokens).rule()
    except (_Unsupported, re.error):
        return None


def _tokens(expr: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(expr):
        if expr[pos:].strip() == "":
            break
        match = _TOKEN.match(expr, pos)
        if match is None:
            raise _Unsupported(expr[pos:])
        kind = match.lastgroup
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.pos = 0

    def _next(self, kind: str | None = None, value: str | None = None) -> str:
        if self.pos >= len(self.tokens):
            raise _Unsupported("unexpected end")
        got_kind, got = self.tokens[self.pos]
        if (kind and got_kind != kind) or (value and got != value):
            raise _Unsupported(got)
        self.pos += 1
        return got

    def _peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def rule(self) -> LocalRule:
        summed = self._peek() == "sum"
        if summed:
            self._next("name")
            self._next("op", "(")
        function, metric, matchers, range_s = self._inner()
        if summed:
            self._next("op", ")")
        compare = self._next("op")
        if compare not in _COMPARE:
            raise _Unsupported(compare)
        threshold = float(self._next("number"))
        if self.pos != len(self.tokens):
            raise _Unsupported("trailing tokens")
        return LocalRule(metric, matchers, function, range_s, summed, compare, threshold)

    def _inner(self):
        if self._peek() in ("rate", "increase"):
            function = self._next("name")
            self._next("op", "(")
            metric, matchers = self._selector()
            range_s = duration_s(self._next("range"))
            self._next("op", ")")
            if range_s <= 0:
                raise _Unsupported("empty range")
            return function, metric, matchers, range_s
        metric, matchers = self._selector()
        return None, metric, matchers, None

    def _selector(self) -> tuple[str, tuple[Matcher, ...]]:
        metric = self._next("name")
        if metric not in METRICS:
            raise _Unsupported(metric)
        matchers = []
        if self._peek() == "{":
            self._next("op", "{")
            while self._peek() != "}":
                label = self._next("name")
                if label not in METRICS[metric]:
                    raise _Unsupported(label)
                op = self._next("op")
                if op not in ("=", "!=", "=~", "!~"):
                    raise _Unsupported(op)
                value = _unquote(self._next("string"))
                if op in ("=~", "!~"):
                    re.compile(value)
                matchers.append(Matcher(label, op, value))
                if self._peek() == ",":
                    self._next("op", ",")
            self._next("op", "}")
        return metric, tuple(matchers)


def _unquote(literal: str) -> str:
    escapes = {"n": "\n", "t": "\t"}
    return re.sub(r"\\(.)", lambda m: escapes.get(m[1], m[1]), literal[1:-1])
