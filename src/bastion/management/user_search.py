"""Auth0's user search (search engine v3): the Lucene query of `GET /api/v2/users?q=`.

Two steps, each readable on its own:

1. `parse_query(text)` turns the query into a small tree (`Term`, `Range`, `Exists`,
   `MatchAll`, `Not`, `And`, `Or`): syntax only, no database.
2. `query_condition(tree)` turns the tree into one SQLAlchemy condition on `users` that
   works on SQLite and PostgreSQL; `sort_order(text)` does the same for `sort=field:1`.

Whatever the query holds, it reaches the database only as bound parameters. Anything
this subset does not understand is an `InvalidQuery` (400 `invalid_query_string`),
never a silently different result. docs/management-api.md ("User search") lists the
syntax, the fields and the choices made where Auth0's documentation is silent.
"""

from __future__ import annotations

import re
from calendar import monthrange
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Callable, Union

from sqlalchemy import Boolean, ColumnElement, and_, bindparam, exists, false, func, not_, or_, select, true
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.types import Numeric, String

from bastion.errors import ManagementError
from bastion.storage.tables import IdentityRow, UserRow

__all__ = [
    "InvalidQuery", "Term", "Range", "Exists", "MatchAll", "Not", "And", "Or", "Node",
    "parse_query", "query_condition", "user_search_condition", "sort_order",
    "MAX_QUERY_LENGTH", "MAX_DEPTH", "MAX_TERMS", "FREE_TEXT_FIELDS",
]

MAX_QUERY_LENGTH = 4096  # characters; Auth0 answers an over-long query with 414 and names no number
MAX_DEPTH = 10  # nested parentheses
MAX_TERMS = 200  # terms, ranges and _exists_ in one query


class InvalidQuery(ManagementError):
    """A query this search cannot answer: Auth0's 400 `invalid_query_string`."""

    def __init__(self, message: str):
        super().__init__(400, f"Invalid query: {message}", "invalid_query_string")


# -- the tree ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Term:
    """`field:value`, or a bare value (`field` None: the free-text fields). `parts` are the
    literal pieces between `*` wildcards: one piece is an exact value, `("jo", "")` is `jo*`."""

    field: str | None
    parts: tuple[str, ...]

    @property
    def wildcard(self) -> bool:
        return len(self.parts) > 1


@dataclass(frozen=True)
class Range:
    """`field:[low TO high]`; a bound of None is `*` (open); `{`/`}` exclude the bound."""

    field: str
    low: str | None
    high: str | None
    include_low: bool
    include_high: bool


@dataclass(frozen=True)
class Exists:
    """`_exists_:field` (or `field:*`)."""

    field: str


@dataclass(frozen=True)
class MatchAll:
    """`*` or `*:*`."""


@dataclass(frozen=True)
class Not:
    operand: "Node"


@dataclass(frozen=True)
class And:
    operands: tuple["Node", ...]


@dataclass(frozen=True)
class Or:
    operands: tuple["Node", ...]


Node = Union[Term, Range, Exists, MatchAll, Not, And, Or]


@dataclass(frozen=True)
class _Prefixed:
    """While parsing: a clause with `+` (required among the clauses side by side, Lucene's
    MUST) or with `-`/`!`/`NOT` (excluded from them, Lucene's MUST_NOT)."""

    operand: Node
    required: bool


# -- parsing -----------------------------------------------------------------------------

_FIELD_NAME = r"[A-Za-z_][A-Za-z0-9_\-]*(?:\.[A-Za-z0-9_\-]+)*"
_FIELD = re.compile(rf"(\*|{_FIELD_NAME}):", re.ASCII)  # `field:` at the start of a clause
_EXISTS_NAME = re.compile(_FIELD_NAME, re.ASCII)
_UNSUPPORTED = {
    "?": "the ? wildcard is not supported (Auth0 does not support it either); use *",
    "~": "fuzzy and proximity searches (~) are not supported",
    "^": "boosts (^) are not supported",
    "[": "'[' starts a range and needs a field: field:[low TO high]",
    "]": "unexpected ']'",
    "{": "'{' starts a range and needs a field: field:{low TO high}",
    "}": "unexpected '}'",
}


def _ends_word(char: str) -> bool:
    return char.isspace() or char in '()"'


def _and(operands: list[Node]) -> Node:
    return operands[0] if len(operands) == 1 else And(tuple(operands))


def _or(operands: list[Node]) -> Node:
    return operands[0] if len(operands) == 1 else Or(tuple(operands))


def _plain(node: Node | _Prefixed) -> Node:
    """A prefixed clause inside AND/OR: `-x` is NOT x, `+x` is x."""
    if isinstance(node, _Prefixed):
        return node.operand if node.required else Not(node.operand)
    return node


class _Parser:
    """Recursive descent over the characters. Precedence, loosest first: clauses side by
    side (Lucene's rules: `+` required, `-`/`NOT` excluded, others alternatives), `OR`,
    `AND`, then the prefixes `NOT`, `!`, `-`, `+`."""

    def __init__(self, text: str):
        self.text = text
        self.pos = 0
        self.depth = 0
        self.terms = 0

    # -- helpers

    def fail(self, message: str, at: int | None = None) -> InvalidQuery:
        where = self.pos if at is None else at
        return InvalidQuery(f"{message} (at character {where + 1})" if where < len(self.text) else f"{message} (at the end)")

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def at_end(self) -> bool:
        self.skip_space()
        return self.pos >= len(self.text)

    def keyword(self, *words: str) -> str | None:
        """The operator at the cursor (consumed), if any: AND, OR, NOT (capitals, as Auth0
        requires, then a space, a parenthesis, a quote or the end), &&, ||."""
        self.skip_space()
        for word in words:
            if word in ("&&", "||"):
                if self.text.startswith(word, self.pos):
                    self.pos += 2
                    return word
                continue
            end = self.pos + len(word)
            if self.text.startswith(word, self.pos) and (end == len(self.text) or _ends_word(self.text[end])):
                self.pos = end
                return word
        return None

    def count_term(self) -> None:
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise InvalidQuery(f"too many terms (at most {MAX_TERMS})")

    # -- grammar

    def query(self) -> Node:
        node = self.sequence(None)
        if not self.at_end():
            raise self.fail("unexpected ')'" if self.text[self.pos] == ")" else "unexpected text")
        return node

    def sequence(self, field: str | None) -> Node:
        """Clauses side by side, up to the end or a ')'. Auth0's default operator is Lucene's,
        OR; a `+` clause is required, a `-`/`NOT` clause excluded."""
        required: list[Node] = []
        excluded: list[Node] = []
        optional: list[Node] = []
        while not self.at_end() and self.text[self.pos] != ")":
            clause = self.disjunction(field)
            if isinstance(clause, _Prefixed):
                (required if clause.required else excluded).append(clause.operand)
            else:
                optional.append(clause)
        if not (required or excluded or optional):
            raise self.fail("expected a term")
        parts = list(required)
        if optional and not required:
            parts.append(_or(optional))
        if excluded:
            parts.append(Not(_or(excluded)))
        return _and(parts)

    def disjunction(self, field: str | None) -> Node | _Prefixed:
        operands = [self.conjunction(field)]
        while self.keyword("OR", "||"):
            operands.append(self.conjunction(field))
        return operands[0] if len(operands) == 1 else Or(tuple(_plain(o) for o in operands))

    def conjunction(self, field: str | None) -> Node | _Prefixed:
        operands = [self.unary(field)]
        while self.keyword("AND", "&&"):
            operands.append(self.unary(field))
        return operands[0] if len(operands) == 1 else And(tuple(_plain(o) for o in operands))

    def unary(self, field: str | None) -> Node | _Prefixed:
        negations = 0
        required = False
        while True:  # a loop, not recursion: a long chain of NOTs cannot exhaust the stack
            if self.keyword("NOT"):
                negations += 1
                continue
            self.skip_space()
            if self.pos < len(self.text) and self.text[self.pos] in "!-+":
                sign = self.text[self.pos]
                if self.pos + 1 >= len(self.text) or self.text[self.pos + 1].isspace():
                    raise self.fail(f"'{sign}' must be followed by a term")
                self.pos += 1
                if sign == "+":
                    required = True
                else:
                    negations += 1
                continue
            break
        node = self.primary(field)
        if negations % 2:
            return _Prefixed(node, required=False)
        return _Prefixed(node, required=True) if required else node

    def primary(self, field: str | None) -> Node:
        self.skip_space()
        if self.pos >= len(self.text):
            raise self.fail("expected a term")
        start = self.pos
        char = self.text[self.pos]
        if char == ")":
            raise self.fail("expected a term before ')'")
        if self.keyword("AND", "OR", "&&", "||"):
            raise self.fail("expected a term before the operator", at=start)
        named = _FIELD.match(self.text, self.pos)
        if named:
            self.pos = named.end()
            self.skip_space()
            return self.value(named.group(1), start)
        return self.value(field, start, bare=True)

    def value(self, field: str | None, start: int, *, bare: bool = False) -> Node:
        """What follows `field:` (or a bare clause, with the field of an enclosing `field:(...)`)."""
        if self.pos >= len(self.text):
            raise self.fail("expected a value after ':'")
        char = self.text[self.pos]
        if char == "(":
            if field == "_exists_":
                raise self.fail("_exists_ takes one field name")
            return self.group(field)
        if field == "_exists_":
            self.count_term()
            name = _EXISTS_NAME.match(self.text, self.pos)
            if not name or (name.end() < len(self.text) and not _ends_word(self.text[name.end()])):
                raise self.fail("_exists_ must be followed by a field name")
            self.pos = name.end()
            return Exists(name.group())
        if char in "[{":
            if field is None:
                raise self.fail(_UNSUPPORTED[char])
            return self.range(field)
        self.count_term()
        if char == '"':
            return Term(field, (self.phrase(),))
        parts = self.word(allow_colon=not bare)
        if field == "*":
            if parts == ("", ""):
                return MatchAll()
            raise self.fail("'*:' only in '*:*' (every user)", at=start)
        if parts == ("", ""):
            return MatchAll() if field is None else Exists(field)
        if len(parts) > 1 and not (len(parts) == 2 and parts[0] and not parts[1]):
            if sum(len(p) for p in parts) < 3:
                raise self.fail("a leading or inner wildcard needs at least 3 other characters (name:*usa, not name:*sa)", at=start)
        return Term(field, parts)

    def group(self, field: str | None) -> Node:
        opened = self.pos
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"too deeply nested (at most {MAX_DEPTH} levels of parentheses)")
        self.pos += 1
        if self.at_end():
            raise self.fail("missing ')'", at=opened)
        if self.text[self.pos] == ")":
            raise self.fail("empty parentheses")
        node = self.sequence(field)
        if self.at_end():
            raise self.fail("missing ')'", at=opened)
        self.pos += 1  # the ')'
        self.depth -= 1
        return node

    def phrase(self) -> str:
        opened = self.pos
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\":
                if self.pos + 1 >= len(self.text):
                    break
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            if char == '"':
                self.pos += 1
                if self.pos < len(self.text) and self.text[self.pos] in "~^":
                    raise self.fail(_UNSUPPORTED[self.text[self.pos]])
                return "".join(out)
            out.append(char)
            self.pos += 1
        raise self.fail('missing closing \'"\'', at=opened)

    def word(self, *, allow_colon: bool) -> tuple[str, ...]:
        """An unquoted value: the literal pieces between unescaped `*`s."""
        pieces: list[str] = []  # the literal text between wildcards
        literal: list[str] = []
        start = self.pos
        while self.pos < len(self.text) and not _ends_word(self.text[self.pos]):
            char = self.text[self.pos]
            if char == "\\":
                if self.pos + 1 >= len(self.text):
                    raise self.fail("a '\\' must escape a character")
                literal.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            if char in _UNSUPPORTED:
                raise self.fail(_UNSUPPORTED[char])
            if char == "/" and self.pos == start:
                raise self.fail("regular expressions (/.../) are not supported")
            if char == ":" and not allow_colon:
                raise self.fail("invalid field name before ':' (escape the ':' or quote the value to search for it)")
            if char == "*":
                pieces.append("".join(literal))
                literal = []
            else:
                literal.append(char)
            self.pos += 1
        pieces.append("".join(literal))
        if self.pos == start:
            raise self.fail("expected a value")
        if len(pieces) == 1:
            return (pieces[0],)
        # `jo**n*` -> ("jo", "n", ""): consecutive wildcards are one
        return (pieces[0], *(p for p in pieces[1:-1] if p), pieces[-1])

    def range(self, field: str) -> Range:
        opened = self.pos
        include_low = self.text[self.pos] == "["
        self.pos += 1
        low = self.bound()
        if not self.keyword("TO"):
            raise self.fail("expected 'TO' in the range")
        high = self.bound()
        self.skip_space()
        if self.pos >= len(self.text) or self.text[self.pos] not in "]}":
            raise self.fail("a range ends with ']' or '}'", at=opened if self.pos >= len(self.text) else None)
        include_high = self.text[self.pos] == "]"
        self.pos += 1
        self.count_term()
        return Range(field, low, high, include_low, include_high)

    def bound(self) -> str | None:
        self.skip_space()
        if self.pos >= len(self.text):
            raise self.fail("unfinished range")
        if self.text[self.pos] == '"':
            return self.phrase()
        out: list[str] = []
        wildcard = False
        start = self.pos
        while self.pos < len(self.text) and not self.text[self.pos].isspace() and self.text[self.pos] not in "]}":
            char = self.text[self.pos]
            if char == "\\" and self.pos + 1 < len(self.text):
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            wildcard = wildcard or char == "*"
            out.append(char)
            self.pos += 1
        text = "".join(out)
        if not text:
            raise self.fail("expected a range bound")
        if text == "*":
            return None
        if wildcard:
            raise self.fail("a range bound is a value, or '*' alone for an open end", at=start)
        return text


def parse_query(text: str) -> Node | None:
    """The query's tree; None for an empty query (every user). Raises InvalidQuery."""
    if len(text) > MAX_QUERY_LENGTH:
        raise InvalidQuery(f"the query is too long ({len(text)} characters, at most {MAX_QUERY_LENGTH})")
    if not text.strip():
        return None
    return _Parser(text).query()


# -- translation: dialect-specific pieces -----------------------------------------------------


def _like_pattern(parts: tuple[str, ...]) -> str:
    """LIKE pattern (escape character '!') with the user's %, _ and ! taken literally."""
    escaped = [re.sub(r"([!%_])", r"!\1", part) for part in parts]
    return "%".join(escaped)


def _glob_pattern(parts: tuple[str, ...]) -> str:
    """SQLite GLOB pattern (case-sensitive) with the user's *, ? and [ taken literally."""
    escaped = [re.sub(r"([*?\[])", r"[\1]", part) for part in parts]
    return "*".join(escaped)


class _CaseSensitiveMatch(ColumnElement):
    """`expr` matches the wildcard pattern, letter case counting: SQLite's LIKE ignores case
    (ASCII), so there GLOB; PostgreSQL's LIKE counts it."""

    type = Boolean()
    inherit_cache = False

    def __init__(self, expr: ColumnElement, parts: tuple[str, ...]):
        self.expr = expr
        self.parts = parts


@compiles(_CaseSensitiveMatch, "sqlite")
def _case_sensitive_sqlite(element: _CaseSensitiveMatch, compiler, **kw) -> str:
    pattern = bindparam(None, _glob_pattern(element.parts), type_=String())
    return f"({compiler.process(element.expr, **kw)} GLOB {compiler.process(pattern, **kw)})"


@compiles(_CaseSensitiveMatch)
def _case_sensitive_default(element: _CaseSensitiveMatch, compiler, **kw) -> str:
    return compiler.process(element.expr.like(_like_pattern(element.parts), escape="!"), **kw)


@dataclass(frozen=True)
class _JsonTest:
    """What a metadata value must be: `kind` is string, number, boolean, pattern, range or exists."""

    kind: str
    value: object = None
    low: Decimal | None = None
    high: Decimal | None = None
    include_low: bool = True
    include_high: bool = True


class _MetadataMatch(ColumnElement):
    """The JSON value at `path` of a metadata column passes `test`: the value itself, or one
    element of the array there (Auth0 searches metadata arrays of scalars)."""

    type = Boolean()
    inherit_cache = False

    def __init__(self, column: ColumnElement, path: tuple[str, ...], test: _JsonTest):
        self.column = column
        self.path = path
        self.test = test


def _bind(compiler, value, type_, **kw) -> str:
    return compiler.process(bindparam(None, value, type_=type_), **kw)


@compiles(_MetadataMatch, "sqlite")
def _metadata_sqlite(element: _MetadataMatch, compiler, **kw) -> str:
    column = compiler.process(element.column, **kw)
    path = _bind(compiler, "$" + "".join(f'."{key}"' for key in element.path), String(), **kw)
    test = element.test
    if test.kind == "exists":  # not null, not an empty array or object
        return f"EXISTS (SELECT 1 FROM json_each({column}, {path}) AS e WHERE e.type <> 'null')"
    number = "e.type IN ('integer', 'real')"
    if test.kind == "string":
        where = f"e.type = 'text' AND e.atom = {_bind(compiler, test.value, String(), **kw)}"
    elif test.kind == "pattern":
        where = f"e.type = 'text' AND e.atom GLOB {_bind(compiler, _glob_pattern(test.value), String(), **kw)}"
    elif test.kind == "boolean":
        where = "e.type = 'true'" if test.value else "e.type = 'false'"
    elif test.kind == "number":
        where = f"{number} AND e.atom = {_bind(compiler, float(test.value), Numeric(asdecimal=False), **kw)}"
    else:  # range
        where = number
        if test.low is not None:
            where += f" AND e.atom {'>=' if test.include_low else '>'} {_bind(compiler, float(test.low), Numeric(asdecimal=False), **kw)}"
        if test.high is not None:
            where += f" AND e.atom {'<=' if test.include_high else '<'} {_bind(compiler, float(test.high), Numeric(asdecimal=False), **kw)}"
    # a scalar at the path gives one row with no key, an array one row per element (an
    # integer key); an object's members (text keys) are not values of the path itself
    return (
        f"EXISTS (SELECT 1 FROM json_each({column}, {path}) AS e "
        f"WHERE (e.key IS NULL OR typeof(e.key) = 'integer') AND {where})"
    )


@compiles(_MetadataMatch, "postgresql")
def _metadata_postgresql(element: _MetadataMatch, compiler, **kw) -> str:
    column = compiler.process(element.column, **kw)
    path = _bind(compiler, "{" + ",".join(f'"{key}"' for key in element.path) + "}", String(), **kw)
    value = f"({column} #> CAST({path} AS TEXT[]))"
    test = element.test
    if test.kind == "exists":  # not null, not an empty array or object (SQLite's rule above)
        return (
            f"(CASE json_typeof({value}) "
            f"WHEN 'array' THEN EXISTS (SELECT 1 FROM json_array_elements({value}) AS e(v) WHERE json_typeof(e.v) <> 'null') "
            f"WHEN 'object' THEN EXISTS (SELECT 1 FROM json_each({value}) AS e(k, v) WHERE json_typeof(e.v) <> 'null') "
            f"WHEN 'null' THEN false ELSE {value} IS NOT NULL END)"
        )
    text = "(e.v #>> '{}')"
    number = "(CASE WHEN json_typeof(e.v) = 'number' THEN CAST(e.v #>> '{}' AS NUMERIC) END)"  # CASE: never casts a string
    if test.kind == "string":
        where = f"json_typeof(e.v) = 'string' AND {text} = {_bind(compiler, test.value, String(), **kw)}"
    elif test.kind == "pattern":
        like = _bind(compiler, _like_pattern(test.value), String(), **kw)
        where = f"json_typeof(e.v) = 'string' AND {text} LIKE {like} ESCAPE '!'"
    elif test.kind == "boolean":
        where = f"json_typeof(e.v) = 'boolean' AND {text} = " + ("'true'" if test.value else "'false'")
    elif test.kind == "number":
        where = f"{number} = {_bind(compiler, test.value, Numeric(), **kw)}"
    else:  # range
        where = "json_typeof(e.v) = 'number'"
        if test.low is not None:
            where += f" AND {number} {'>=' if test.include_low else '>'} {_bind(compiler, test.low, Numeric(), **kw)}"
        if test.high is not None:
            where += f" AND {number} {'<=' if test.include_high else '<'} {_bind(compiler, test.high, Numeric(), **kw)}"
    elements = f"CASE json_typeof({value}) WHEN 'array' THEN {value} ELSE json_build_array({value}) END"
    return f"EXISTS (SELECT 1 FROM json_array_elements({elements}) AS e(v) WHERE {where})"


# -- translation: the fields --------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    """A searchable field: `kind` is text, boolean, integer or date; `case_insensitive` for
    Auth0's normalized fields; `stored_lower` when the column already holds lower case;
    `identity` when it is a column of the identities (matched through EXISTS)."""

    kind: str
    column: Callable[[], ColumnElement]
    case_insensitive: bool = False
    stored_lower: bool = False
    identity: bool = False


_FIELDS: dict[str, _Field] = {
    "user_id": _Field("text", lambda: UserRow.user_id),
    "email": _Field("text", lambda: UserRow.email, case_insensitive=True, stored_lower=True),
    "email_verified": _Field("boolean", lambda: UserRow.email_verified),
    "name": _Field("text", lambda: UserRow.name, case_insensitive=True),
    "given_name": _Field("text", lambda: UserRow.given_name, case_insensitive=True),
    "family_name": _Field("text", lambda: UserRow.family_name, case_insensitive=True),
    "nickname": _Field("text", lambda: UserRow.nickname, case_insensitive=True),
    "username": _Field("text", lambda: UserRow.username),
    "phone_number": _Field("text", lambda: UserRow.phone_number),
    "phone_verified": _Field("boolean", lambda: UserRow.phone_verified),
    "picture": _Field("text", lambda: UserRow.picture),
    "created_at": _Field("date", lambda: UserRow.created_at),
    "updated_at": _Field("date", lambda: UserRow.updated_at),
    "last_login": _Field("date", lambda: UserRow.last_login),
    "last_ip": _Field("text", lambda: UserRow.last_ip),
    "logins_count": _Field("integer", lambda: UserRow.logins_count),
    "blocked": _Field("boolean", lambda: UserRow.blocked),
    # Bastion's: the connection of the user's own (main) identity, as the former `q` had it;
    # Auth0's v3 field is identities.connection, which also sees linked identities
    "connection": _Field("text", lambda: UserRow.connection),
    "identities.connection": _Field("text", lambda: IdentityRow.connection, identity=True),
    "identities.provider": _Field("text", lambda: IdentityRow.provider, identity=True),
    "identities.user_id": _Field("text", lambda: IdentityRow.external_id, identity=True),
    "identities.isSocial": _Field("boolean", lambda: IdentityRow.is_social, identity=True),
}
_EMAIL_DOMAIN = "email.domain"
_METADATA = ("app_metadata", "user_metadata")

# The fields a bare term (no field name) searches: Auth0's normalized text fields, the user
# name and the user id. Never metadata (Auth0: "a term without a field name will not match
# text in the user metadata fields").
FREE_TEXT_FIELDS = ("user_id", "email", "name", "given_name", "family_name", "nickname", "username")

_SEARCHABLE = ", ".join([*_FIELDS, _EMAIL_DOMAIN, "app_metadata.<path>", "user_metadata.<path>"])


def _identity_exists(condition: ColumnElement[bool]) -> ColumnElement[bool]:
    """Some identity the user shows has `condition`: its own, or one of a secondary linked to it."""
    owner = aliased(UserRow)
    return exists(
        select(IdentityRow.id)
        .join(owner, owner.user_id == IdentityRow.user_id)
        .where(or_(owner.user_id == UserRow.user_id, owner.linked_to == UserRow.user_id), condition)
    )


def _text_match(field: _Field, parts: tuple[str, ...]) -> ColumnElement[bool]:
    column = field.column()
    if field.case_insensitive:
        target = column if field.stored_lower else func.lower(column)
        parts = tuple(p.lower() for p in parts)
        if len(parts) == 1:
            return target == parts[0]
        return target.like(_like_pattern(parts), escape="!")
    if len(parts) == 1:
        return column == parts[0]
    return _CaseSensitiveMatch(column, parts)


_INTEGER = re.compile(r"[+-]?\d{1,15}")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_DATE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?)?)?"
    r"(Z|[+-]\d{2}(?::?\d{2})?)?",
)


def _integer(field: str, text: str) -> int:
    if not _INTEGER.fullmatch(text):
        raise InvalidQuery(f"{field} takes a whole number, not {text!r}")
    return int(text)


def _date_span(field: str, text: str) -> tuple[datetime, datetime]:
    """The span a date names: 2017 the year, 2017-12 the month, 2017-12-31 the day,
    2017-12-31T10:00 the minute...; a time with seconds or fractions is one instant.
    UTC unless the value says otherwise."""
    match = _DATE.fullmatch(text.strip())
    if not match:
        raise InvalidQuery(f"{field} takes an ISO 8601 date or date-time (2024-05-01, 2024-05-01T10:00:00Z), not {text!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    tz = timezone.utc
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0)))
    try:
        start = datetime(
            int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0), int(second or 0),
            int((fraction or "0")[:6].ljust(6, "0")), tzinfo=tz,
        )
        if fraction is not None:
            end = start + timedelta(microseconds=1)
        elif second is not None:
            end = start + timedelta(seconds=1)
        elif minute is not None:
            end = start + timedelta(minutes=1)
        elif day is not None:
            end = start + timedelta(days=1)
        elif month is not None:
            end = start + timedelta(days=monthrange(start.year, start.month)[1])
        else:
            end = start.replace(year=start.year + 1)
        return start.astimezone(timezone.utc), end.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        raise InvalidQuery(f"{field}: {text!r} is no valid date") from None


def _boolean(field: str, text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise InvalidQuery(f"{field} takes true or false, not {text!r}")
    return text.lower() == "true"


def _number(text: str) -> Decimal | None:
    if not _NUMBER.fullmatch(text):
        return None
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    return number if number.is_finite() and abs(number) < Decimal("1e300") else None


def _metadata_term(name: str, column: ColumnElement, path: tuple[str, ...], term: Term) -> ColumnElement[bool]:
    if term.wildcard:
        if name == "user_metadata":
            raise InvalidQuery("wildcards are not available on user_metadata fields (as in Auth0)")
        return _MetadataMatch(column, path, _JsonTest("pattern", term.parts))
    # Like Auth0's index, a value matches the JSON string, number or boolean it spells.
    text = term.parts[0]
    tests = [_MetadataMatch(column, path, _JsonTest("string", text))]
    number = _number(text)
    if number is not None:
        tests.append(_MetadataMatch(column, path, _JsonTest("number", number)))
    if text in ("true", "false"):
        tests.append(_MetadataMatch(column, path, _JsonTest("boolean", text == "true")))
    return or_(*tests)


def _metadata_range(name: str, column: ColumnElement, path: tuple[str, ...], node: Range) -> ColumnElement[bool]:
    if name == "user_metadata":
        raise InvalidQuery("ranges are not available on user_metadata fields (as in Auth0)")
    bounds = []
    for bound in (node.low, node.high):
        number = None if bound is None else _number(bound)
        if bound is not None and number is None:
            raise InvalidQuery(f"{node.field}: ranges on app_metadata take numbers, not {bound!r}")
        bounds.append(number)
    test = _JsonTest("range", low=bounds[0], high=bounds[1], include_low=node.include_low, include_high=node.include_high)
    return _MetadataMatch(column, path, test)


def _metadata(field: str) -> tuple[str, ColumnElement, tuple[str, ...]] | None:
    name, _, rest = field.partition(".")
    if name not in _METADATA:
        return None
    if not rest:
        raise InvalidQuery(f"name a key of {name}: {name}.<key>")
    return name, getattr(UserRow, name), tuple(rest.split("."))


def _field(name: str) -> _Field:
    field = _FIELDS.get(name)
    if field is None:
        raise InvalidQuery(f"unknown field {name!r}; searchable fields: {_SEARCHABLE}")
    return field


def _exists(name: str) -> ColumnElement[bool]:
    metadata = _metadata(name)
    if metadata:
        return _MetadataMatch(metadata[1], metadata[2], _JsonTest("exists"))
    if name == _EMAIL_DOMAIN:
        return UserRow.email.is_not(None)
    field = _field(name)
    condition = field.column().is_not(None)
    return _identity_exists(condition) if field.identity else condition


def _term(term: Term) -> ColumnElement[bool]:
    if term.field is None:
        return or_(*(_text_match(_FIELDS[name], term.parts) for name in FREE_TEXT_FIELDS))
    metadata = _metadata(term.field)
    if metadata:
        return _metadata_term(metadata[0], metadata[1], metadata[2], term)
    if term.field == _EMAIL_DOMAIN:  # the part after '@'; emails are stored in lower case
        return UserRow.email.like(_like_pattern(("", "@" + term.parts[0].lower(), *(p.lower() for p in term.parts[1:]))), escape="!")
    field = _field(term.field)
    if field.kind == "text":
        condition = _text_match(field, term.parts)
    else:
        if term.wildcard:
            raise InvalidQuery(f"wildcards only work on text fields, not on {term.field}")
        value = term.parts[0]
        column = field.column()
        if field.kind == "boolean":
            condition = column == _boolean(term.field, value)
        elif field.kind == "integer":
            condition = column == _integer(term.field, value)
        else:
            start, end = _date_span(term.field, value)
            condition = and_(column >= start, column < end)
    return _identity_exists(condition) if field.identity else condition


def _range(node: Range) -> ColumnElement[bool]:
    metadata = _metadata(node.field)
    if metadata:
        return _metadata_range(metadata[0], metadata[1], metadata[2], node)
    field = _FIELDS.get(node.field) if node.field == _EMAIL_DOMAIN else _field(node.field)
    if field is None or field.kind not in ("integer", "date"):
        raise InvalidQuery(f"ranges work on logins_count, created_at, updated_at, last_login and app_metadata numbers, not on {node.field}")
    column = field.column()
    conditions = []
    if field.kind == "integer":
        if node.low is not None:
            low = _integer(node.field, node.low)
            conditions.append(column >= low if node.include_low else column > low)
        if node.high is not None:
            high = _integer(node.field, node.high)
            conditions.append(column <= high if node.include_high else column < high)
    else:
        # A bound names a span (a day, a month...): [2017-12 includes December from its
        # start, {2017-11 starts after November, 2017-12] ends with December, 2017-12} before it.
        if node.low is not None:
            start, end = _date_span(node.field, node.low)
            conditions.append(column >= (start if node.include_low else end))
        if node.high is not None:
            start, end = _date_span(node.field, node.high)
            conditions.append(column < (end if node.include_high else start))
    if not conditions:
        return column.is_not(None)
    return and_(*conditions)


def query_condition(node: Node) -> ColumnElement[bool]:
    """The SQLAlchemy condition on `users` for the tree. Raises InvalidQuery for a field
    or a construct the field does not take."""
    if isinstance(node, Term):
        return _term(node)
    if isinstance(node, Range):
        return _range(node)
    if isinstance(node, Exists):
        return _exists(node.field)
    if isinstance(node, MatchAll):
        return true()
    if isinstance(node, Not):
        # NOT over a NULL (a missing value) must be true, as in Lucene: coalesce first
        return not_(func.coalesce(query_condition(node.operand), false()))
    if isinstance(node, And):
        return and_(*(query_condition(o) for o in node.operands))
    if isinstance(node, Or):
        return or_(*(query_condition(o) for o in node.operands))
    raise TypeError(f"not a query node: {node!r}")


def user_search_condition(q: str | None) -> ColumnElement[bool] | None:
    """`q` of GET /api/v2/users as a condition on `users`, None for every user."""
    if q is None:
        return None
    tree = parse_query(q)
    return None if tree is None else query_condition(tree)


# -- sort ---------------------------------------------------------------------------------

_SORTABLE: dict[str, Callable[[], ColumnElement]] = {
    "user_id": lambda: UserRow.user_id,
    "email": lambda: UserRow.email,
    "name": lambda: UserRow.name,
    "nickname": lambda: UserRow.nickname,
    "given_name": lambda: UserRow.given_name,
    "family_name": lambda: UserRow.family_name,
    "username": lambda: UserRow.username,
    "created_at": lambda: UserRow.created_at,
    "updated_at": lambda: UserRow.updated_at,
    "last_login": lambda: UserRow.last_login,
    "logins_count": lambda: UserRow.logins_count,
}
_SORT = re.compile(r"\s*([A-Za-z_][\w.]*)\s*:\s*(1|-1)\s*", re.ASCII)


def sort_order(sort: str | None) -> list[ColumnElement]:
    """ORDER BY for Auth0's `sort=field:1` (ascending) or `field:-1` (descending): missing
    values last either way, then user_id so that pages never overlap. Empty for none."""
    if sort is None or not sort.strip():
        return []
    match = _SORT.fullmatch(sort)
    if not match:
        raise ManagementError(400, "Invalid sort: use field:1 (ascending) or field:-1 (descending)", "invalid_query_string")
    name, direction = match.groups()
    if name.split(".")[0] in _METADATA:
        raise ManagementError(400, "Sorting by app_metadata or user_metadata is not supported", "invalid_query_string")
    if name not in _SORTABLE:
        raise ManagementError(
            400, f"Invalid sort field {name!r}; sortable fields: {', '.join(_SORTABLE)}", "invalid_query_string"
        )
    column = _SORTABLE[name]()
    if direction == "1":
        return [column.asc().nulls_last(), UserRow.user_id.asc()]
    return [column.desc().nulls_last(), UserRow.user_id.desc()]
