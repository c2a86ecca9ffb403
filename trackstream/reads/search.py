"""MLflow's search grammar (``search_runs`` / ``search_experiments`` filters and ``order_by``).

Filters parse into :class:`Clause` values; :func:`run_filter_sql` turns them into a ClickHouse
WHERE fragment whose values are all ``%(name)s`` parameters, so a filter can never change the
structure of a query. The SQL uses only functions ClickHouse 18.16 already had.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any


class SearchError(ValueError):
    """An invalid filter or order_by (MLflow answers INVALID_PARAMETER_VALUE)."""


METRIC, PARAM, TAG, ATTR, DATASET = "metric", "parameter", "tag", "attribute", "dataset"
ENTITIES = {
    "metric": METRIC, "metrics": METRIC,
    "param": PARAM, "params": PARAM, "parameter": PARAM, "parameters": PARAM,
    "tag": TAG, "tags": TAG,
    "attribute": ATTR, "attributes": ATTR, "attr": ATTR, "run": ATTR,
    "dataset": DATASET, "datasets": DATASET,
}  # fmt: skip
RUN_STRING_ATTRS = {"run_id", "run_name", "status", "user_id", "artifact_uri"}
RUN_NUMERIC_ATTRS = {"start_time": "start_time", "end_time": "end_time", "created": "start_time"}
RUN_ORDER_ATTRS = {"artifact_uri", "end_time", "run_id", "run_name", "start_time", "status", "user_id", "created"}
DATASET_ATTRS = {"name", "digest", "context"}
EXPERIMENT_STRING_ATTRS = {"name"}
EXPERIMENT_NUMERIC_ATTRS = {"creation_time", "last_update_time"}
EXPERIMENT_ORDER_ATTRS = {"name", "experiment_id", "creation_time", "last_update_time"}

NUMERIC_OPS = ("=", "!=", "<", "<=", ">", ">=")
STRING_OPS = ("=", "!=", "LIKE", "ILIKE")

_TOKEN = re.compile(
    r"""\s*(?:
    (?P<str>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.)*")
  | (?P<tick>`[^`]*`)
  | (?P<num>[-+]?(?>\d+\.?\d*|\.\d+)(?>[eE][-+]?\d+)?(?![\w.]))
  | (?P<op>!=|<>|<=|>=|=|<|>)
  | (?P<punct>[(),])
  | (?P<word>[A-Za-z_][\w.:/\-]*)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    text: str

    @property
    def upper(self) -> str:
        return self.text.upper()


@dataclass(frozen=True, slots=True)
class Clause:
    entity: str
    key: str
    op: str  # = != < <= > >= LIKE ILIKE IN NOT IN, IS NULL, IS NOT NULL
    value: Any  # float, str, tuple[str, ...] or None


@dataclass(frozen=True, slots=True)
class OrderKey:
    entity: str
    key: str
    ascending: bool


def _tokens(text: str) -> list[Token]:
    out: list[Token] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise SearchError(f"Invalid filter '{text}': unexpected character at position {pos}")
        kind = m.lastgroup or ""
        out.append(Token(kind, m.group(kind)))
        pos = m.end()
    return out


def _unquote(token: Token) -> str:
    body = token.text[1:-1]
    if token.text[0] == "'":
        body = body.replace("''", "'")
    return re.sub(r"\\(.)", r"\1", body)


class _Parser:
    def __init__(self, text: str, attrs: set[str], numeric: set[str], entities: set[str]) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.attrs, self.numeric, self.entities = attrs, numeric, entities

    def peek(self, ahead: int = 0) -> Token | None:
        j = self.i + ahead
        return self.toks[j] if j < len(self.toks) else None

    def take(self) -> Token:
        tok = self.peek()
        if tok is None:
            raise SearchError(f"Invalid clause(s) in filter string: '{self.text}'. Unexpected end of filter.")
        self.i += 1
        return tok

    def identifier(self) -> tuple[str, str]:
        tok = self.take()
        if tok.kind == "tick":
            entity, key = "attributes", _unquote(tok)
        elif tok.kind == "word":
            entity, dot, key = tok.text.partition(".")
            if not dot:
                entity, key = "attributes", tok.text
            elif not key:
                quoted = self.take()
                if quoted.kind not in ("tick", "str") or quoted.text[0] == "'":
                    raise SearchError(f"Invalid identifier '{tok.text}{quoted.text}' in filter '{self.text}'")
                key = _unquote(quoted)
        else:
            raise SearchError(
                f"Invalid clause(s) in filter string: '{self.text}'. Expected an identifier, got '{tok.text}'."
            )
        kind = ENTITIES.get(entity.lower())
        if kind is None or kind not in self.entities:
            raise SearchError(f"Invalid entity type '{entity}'. Valid values are {sorted(self.entities)}")
        if kind == ATTR and key not in self.attrs:
            raise SearchError(f"Invalid attribute key '{key}' specified. Valid keys are '{sorted(self.attrs)}'")
        if kind == DATASET and key not in DATASET_ATTRS:
            raise SearchError(f"Invalid dataset key '{key}' specified. Valid keys are '{sorted(DATASET_ATTRS)}'")
        return kind, key

    def clause(self) -> Clause:
        entity, key = self.identifier()
        tok = self.take()
        op = tok.upper
        if op == "<>":
            op = "!="
        if op == "NOT" and (nxt := self.peek()) is not None and nxt.upper == "IN":
            self.take()
            op = "NOT IN"
        elif op == "IS":
            negate = (nxt := self.peek()) is not None and nxt.upper == "NOT"
            if negate:
                self.take()
            if self.take().upper != "NULL":
                raise SearchError(f"Invalid clause(s) in filter string: '{self.text}'. Expected NULL after IS.")
            if entity not in (PARAM, TAG):
                raise SearchError(f"Invalid comparator 'IS {'NOT ' if negate else ''}NULL' for {entity} '{key}'")
            return Clause(entity, key, "IS NOT NULL" if negate else "IS NULL", None)
        numeric = entity == METRIC or (entity == ATTR and key in self.numeric)
        if numeric:
            allowed: tuple[str, ...] = NUMERIC_OPS
        elif entity == DATASET or (entity == ATTR and key == "run_id"):
            allowed = (*STRING_OPS, "IN", "NOT IN")
        else:
            allowed = STRING_OPS
        if op not in allowed:
            raise SearchError(f"Invalid comparator '{tok.text}' not one of '{list(allowed)}' for {entity} '{key}'")
        if op in ("IN", "NOT IN"):
            return Clause(entity, key, op, self.string_list())
        value = self.take()
        if numeric:
            if value.kind != "num":
                raise SearchError(f"Expected numeric value type for {entity} '{key}'. Found {value.text}")
            return Clause(entity, key, op, float(value.text) if entity == METRIC else _int64_literal(value.text))
        if value.kind != "str":
            raise SearchError(
                f"Value for {entity} '{key}' is either not quoted or unidentified quote types used for string "
                f"value {value.text}. Use either single or double quotes."
            )
        return Clause(entity, key, op, _unquote(value))

    def string_list(self) -> tuple[str, ...]:
        if self.take().text != "(":
            raise SearchError(f"Invalid clause(s) in filter string: '{self.text}'. IN expects a list '(...)'.")
        values: list[str] = []
        while True:
            tok = self.take()
            if tok.kind != "str":
                raise SearchError(f"While parsing a list in the query, expected string value, got {tok.text}")
            values.append(_unquote(tok))
            sep = self.take().text
            if sep == ")":
                return tuple(values)
            if sep != ",":
                raise SearchError(f"Invalid clause(s) in filter string: '{self.text}'. Malformed list.")

    def clauses(self) -> list[Clause]:
        out = [self.clause()]
        while (tok := self.peek()) is not None:
            if tok.upper != "AND":
                raise SearchError(
                    f"Invalid clause(s) in filter string: '{self.text}'. Only AND joins clauses (got '{tok.text}')."
                )
            self.take()
            out.append(self.clause())
        return out


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _int64_literal(text: str) -> int:
    """A numeric attribute's value (start_time, creation_time, …: BIGINT columns) as an int inside their range."""
    try:
        number = int(text) if text.lstrip("+-").isdigit() and len(text) <= 21 else float(text)
    except ValueError:
        raise SearchError(f"Expected numeric value type for attribute. Found {text[:100]}") from None
    if isinstance(number, float) and not math.isfinite(number):
        raise SearchError(f"Numeric value {text[:100]} is out of range for a 64-bit integer attribute")
    number = int(number)
    if not INT64_MIN <= number <= INT64_MAX:
        raise SearchError(f"Numeric value {text[:100]} is out of range for a 64-bit integer attribute")
    return number


def parse_run_filter(text: str | None) -> list[Clause]:
    if not text or not text.strip():
        return []
    attrs = RUN_STRING_ATTRS | set(RUN_NUMERIC_ATTRS)
    return _Parser(text, attrs, set(RUN_NUMERIC_ATTRS), {METRIC, PARAM, TAG, ATTR, DATASET}).clauses()


def parse_experiment_filter(text: str | None) -> list[Clause]:
    if not text or not text.strip():
        return []
    attrs = EXPERIMENT_STRING_ATTRS | EXPERIMENT_NUMERIC_ATTRS
    return _Parser(text, attrs, EXPERIMENT_NUMERIC_ATTRS, {ATTR, TAG}).clauses()


def parse_order_by(items: list[str] | None, order_attrs: set[str], entities: set[str]) -> list[OrderKey]:
    out: list[OrderKey] = []
    for item in items or []:
        text = str(item).strip()
        ascending = True
        head, _, last = text.rpartition(" ")  # not a regex: "(.*?)\s+(ASC|DESC)$" is quadratic on long blanks
        if head.strip() and last.upper() in ("ASC", "DESC"):
            text, ascending = head.strip(), last.upper() == "ASC"
        p = _Parser(text, order_attrs, set(), entities)
        try:
            entity, key = p.identifier()
        except SearchError as exc:
            raise SearchError(f"Invalid order_by clause '{item}': {exc}") from None
        if p.peek() is not None or entity == DATASET:
            raise SearchError(f"Invalid order_by clause '{item}'. Could not be parsed.")
        if any(o.entity == entity and o.key == key for o in out):
            raise SearchError(f"`order_by` contains duplicate fields: {items}")
        out.append(OrderKey(entity, key, ascending))
    return out


def parse_run_order_by(items: list[str] | None) -> list[OrderKey]:
    keys = parse_order_by(items, RUN_ORDER_ATTRS, {METRIC, PARAM, TAG, ATTR})
    return [OrderKey(k.entity, "start_time", k.ascending) if k.key == "created" else k for k in keys]


def parse_experiment_order_by(items: list[str] | None) -> list[OrderKey]:
    return parse_order_by(items, EXPERIMENT_ORDER_ATTRS, {ATTR})


def _string_cond(column: str, op: str, name: str) -> str:
    match op:
        case "LIKE":
            return f"{column} LIKE %({name})s"
        case "ILIKE":
            return f"lower({column}) LIKE lower(%({name})s)"
        case "IN":
            return f"{column} IN %({name})s"
        case "NOT IN":
            return f"{column} NOT IN %({name})s"
    return f"{column} {op} %({name})s"


LATEST_METRIC = (
    "SELECT run_id, argMax(value, (step, timestamp, value)) AS v, argMax(is_nan, (step, timestamp, value)) AS n "
    "FROM latest_metrics WHERE key = %({k})s GROUP BY run_id"
)


def run_filter_sql(clauses: list[Clause]) -> tuple[str, dict[str, Any]]:
    """A condition over the columns of ``runs`` (applied after FINAL) and its parameters."""
    conds: list[str] = []
    params: dict[str, Any] = {}
    for i, c in enumerate(clauses):
        k, val = f"f{i}k", f"f{i}v"
        params[k] = c.key
        if c.value is not None:
            params[val] = c.value
        if c.entity == ATTR:
            params.pop(k)
            column = RUN_NUMERIC_ATTRS.get(c.key, c.key)
            conds.append(_string_cond(column, c.op, val))
        elif c.entity == METRIC:
            # NaN is stored as value 0 (is_nan = 1). As in MLflow's SQL store, every comparison with a NaN
            # latest value is false except "!=", which it always satisfies.
            match = f"(v != %({val})s OR n = 1)" if c.op == "!=" else f"(v {c.op} %({val})s AND n = 0)"
            conds.append(f"run_id IN (SELECT run_id FROM ({LATEST_METRIC.format(k=k)}) WHERE {match})")
        elif c.entity in (PARAM, TAG):
            live = (
                "SELECT run_id, value FROM params FINAL WHERE key = %({k})s"
                if c.entity == PARAM
                else (
                    "SELECT run_id, value FROM (SELECT run_id, value, deleted FROM run_tags FINAL WHERE key = %({k})s) "
                    "WHERE deleted = 0"
                )
            )
            live = live.format(k=k)
            if c.op == "IS NULL":
                conds.append(f"run_id NOT IN (SELECT run_id FROM ({live}))")
            elif c.op == "IS NOT NULL":
                conds.append(f"run_id IN (SELECT run_id FROM ({live}))")
            else:
                conds.append(f"run_id IN (SELECT run_id FROM ({live}) WHERE {_string_cond('value', c.op, val)})")
        else:  # datasets: none are recorded (log-inputs is not implemented), so nothing matches
            params.pop(k)
            params.pop(val, None)
            conds.append("0")
    return (" AND ".join(conds) or "1"), params


def like(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """SQL LIKE (``%`` any run of characters, ``_`` one) in time linear in ``value`` for each piece of
    ``pattern``, never by a backtracking regex: ``.*a.*a.*a…b`` over a long name took a regex engine
    seconds (12 s for one search, the event loop held by the GIL the whole time).

    The pattern splits at ``%`` into pieces of fixed length: the first must match at the start, the last
    at the end, and every other piece at its leftmost place after the one before (the leftmost place is
    always as good as any later one, so no choice is ever revisited).
    """
    if ignore_case:
        pattern, value = pattern.lower(), value.lower()
    pieces = pattern.split("%")
    if len(pieces) == 1:
        return len(value) == len(pattern) and _piece_at(pattern, value, 0)
    first, *middle, last = pieces
    start, end = len(first), len(value) - len(last)
    if end < start or not _piece_at(first, value, 0) or not _piece_at(last, value, end):
        return False
    for piece in middle:
        if piece:
            found = _find_piece(piece, value, start, end)
            if found < 0:
                return False
            start = found + len(piece)
    return True


def _piece_at(piece: str, value: str, at: int) -> bool:
    if "_" not in piece:
        return value.startswith(piece, at)
    return at + len(piece) <= len(value) and all(p in ("_", c) for p, c in zip(piece, value[at:], strict=False))


@lru_cache(maxsize=256)
def _piece_regex(piece: str) -> re.Pattern[str]:
    # literals and "." only: no quantifier, so a search costs at most len(value) * len(piece) steps
    return re.compile("".join("." if ch == "_" else re.escape(ch) for ch in piece), re.DOTALL)


def _find_piece(piece: str, value: str, start: int, end: int) -> int:
    if "_" not in piece:
        return value.find(piece, start, end)
    m = _piece_regex(piece).search(value, start, end)
    return m.start() if m else -1


def compare(op: str, left: Any, right: Any) -> bool:
    """Evaluate one clause in Python; a missing value (None) matches nothing, as an inner join would."""
    if left is None:
        return False
    match op:
        case "=":
            return bool(left == right)
        case "!=":
            return bool(left != right)
        case "<":
            return bool(left < right)
        case "<=":
            return bool(left <= right)
        case ">":
            return bool(left > right)
        case ">=":
            return bool(left >= right)
        case "LIKE" | "ILIKE":
            return like(str(right), str(left), op == "ILIKE")
        case "IN":
            return str(left) in right
        case "NOT IN":
            return str(left) not in right
    raise SearchError(f"Unsupported comparator {op}")


def experiment_matches(clauses: list[Clause], exp: dict[str, Any]) -> bool:
    tags = {t["key"]: t["value"] for t in exp.get("tags", [])}
    for c in clauses:
        if c.entity == TAG:
            present = c.key in tags
            if c.op == "IS NULL":
                ok = not present
            elif c.op == "IS NOT NULL":
                ok = present
            else:
                ok = present and compare(c.op, tags[c.key], c.value)
        else:
            ok = compare(c.op, exp[c.key], c.value)
        if not ok:
            return False
    return True


def _is_nan(value: Any) -> bool:
    return (isinstance(value, float) and math.isnan(value)) or value == "NaN"


def sort_rows(rows: list[dict[str, Any]], keys: list[tuple[Any, bool]]) -> list[dict[str, Any]]:
    """Stable multi-key sort; ``keys`` are (row → value or None, ascending), most significant first.
    In either direction NaN (float or "NaN") sorts after the values and None (missing) last, as MLflow's
    SQL store orders them."""
    out = list(rows)
    for get, ascending in reversed(keys):
        present = [r for r in out if get(r) is not None and not _is_nan(get(r))]
        nans = [r for r in out if get(r) is not None and _is_nan(get(r))]
        missing = [r for r in out if get(r) is None]
        present.sort(key=get, reverse=not ascending)
        out = present + nans + missing
    return out
