"""The query plan: what both SQL (:func:`multimodal_store.sql.parse_sql`) and the Python
query builder produce, and what the executor runs.

Plans hold :class:`~multimodal_store.expr.Expr` trees that may contain
:class:`~multimodal_store.expr.Param` nodes; :func:`bind` replaces them by literal values
(values are bound, never spliced into SQL text). Plans compare structurally with ``==``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from typing import Literal as TypingLiteral

from .errors import ParameterError, QueryError
from .expr import (
    VECTOR_FUNCTIONS,
    Aggregate,
    Expr,
    Function,
    Literal,
    Param,
    Star,
    bind_params,
    lookup_param,
    normalize_count,
    normalize_vector,
    param_label,
    quote_ident,
    structural_key,
    to_sql,
)

__all__ = ["Metric", "OrderKey", "QueryPlan", "SelectItem", "VectorSearch", "bind", "metric_of"]

Metric = TypingLiteral["cosine", "ip", "l2"]


def metric_of(function_name: str) -> Metric:
    """``cosine_similarity`` -> ``cosine``, ``inner_product`` -> ``ip``, ``l2_distance`` -> ``l2``."""
    try:
        return VECTOR_FUNCTIONS[function_name.lower()]  # type: ignore[return-value]
    except KeyError:
        raise QueryError(f"{function_name}() is not a vector function") from None


@dataclass(frozen=True, eq=False)
class SelectItem:
    """One output column: ``expr`` named ``name`` (the alias, the column name, or the SQL text)."""

    expr: Expr
    name: str

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SelectItem) and structural_key(self.expr) == structural_key(other.expr) and (
            self.name == other.name
        )

    def __hash__(self) -> int:
        return hash((structural_key(self.expr), self.name))

    def __repr__(self) -> str:
        return f"SelectItem({self.expr!r} AS {self.name!r})"


@dataclass(frozen=True, eq=False)
class VectorSearch:
    """``ORDER BY <metric>(column, query)``: the vector top-k of the plan.

    ``descending`` is True when larger scores come first. Without ASC/DESC in the SQL the
    best match comes first: cosine and ip descending, l2 ascending.
    """

    column: str
    query: Expr
    metric: Metric
    descending: bool
    alias: str | None = None

    @property
    def function_name(self) -> str:
        return {v: k for k, v in VECTOR_FUNCTIONS.items()}[self.metric]

    def function(self) -> Function:
        """The score expression, e.g. ``cosine_similarity(clip_embedding, :q)``."""
        from .expr import Column

        return Function(self.function_name, (Column(self.column), self.query))

    def _key(self) -> Any:
        return (self.column, structural_key(self.query), self.metric, self.descending, self.alias)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VectorSearch) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        direction = "DESC" if self.descending else "ASC"
        alias = f", alias={self.alias!r}" if self.alias else ""
        return f"VectorSearch({self.function()!r} {direction}{alias})"


@dataclass(frozen=True, eq=False)
class OrderKey:
    """A plain ORDER BY key."""

    expr: Expr
    descending: bool = False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OrderKey) and (structural_key(self.expr), self.descending) == (
            structural_key(other.expr),
            other.descending,
        )

    def __hash__(self) -> int:
        return hash((structural_key(self.expr), self.descending))

    def __repr__(self) -> str:
        return f"OrderKey({self.expr!r} {'DESC' if self.descending else 'ASC'})"


def _opt_key(e: Expr | None) -> Any:
    return None if e is None else structural_key(e)


@dataclass(eq=False)
class QueryPlan:
    """A read query: filter -> vector top-k / ordering -> limit/offset -> projection.

    ``select`` is ``None`` for ``SELECT *``; a list may hold a :class:`SelectItem` whose
    expr is :class:`~multimodal_store.expr.Star` (``SELECT *, score ...``). ``order_by``
    keys break ties after ``vector`` when both are present.
    """

    source: str | None = None
    select: list[SelectItem] | None = None
    where: Expr | None = None
    vector: VectorSearch | None = None
    order_by: list[OrderKey] = field(default_factory=list)
    group_by: list[Expr] = field(default_factory=list)
    limit: Expr | None = None
    offset: Expr | None = None

    # -- introspection -------------------------------------------------------------------
    def expressions(self) -> Iterator[Expr]:
        """Every top-level expression of the plan."""
        if self.select is not None:
            for item in self.select:
                yield item.expr
        if self.where is not None:
            yield self.where
        if self.vector is not None:
            yield self.vector.query
        for key in self.order_by:
            yield key.expr
        yield from self.group_by
        if self.limit is not None:
            yield self.limit
        if self.offset is not None:
            yield self.offset

    def params(self) -> set[str | int]:
        """Keys of the parameters the plan uses (``str`` for ``:name``, ``int`` for ``?``)."""
        out: set[str | int] = set()
        for e in self.expressions():
            out |= e.params()
        return out

    def columns(self) -> set[str]:
        """Columns read by the plan's expressions (not those behind ``SELECT *``)."""
        out: set[str] = set()
        for e in self.expressions():
            out |= e.columns()
        if self.vector is not None:
            out.add(self.vector.column)
        return out

    @property
    def is_aggregate(self) -> bool:
        """True for GROUP BY queries and queries whose SELECT list holds aggregates."""
        if self.group_by:
            return True
        return self.select is not None and any(
            isinstance(node, Aggregate) for item in self.select for node in item.expr.walk()
        )

    @property
    def select_star(self) -> bool:
        """True when the output includes every column (``SELECT *``)."""
        return self.select is None or any(isinstance(item.expr, Star) for item in self.select)

    # -- comparison / text ---------------------------------------------------------------
    def _key(self) -> Any:
        return (
            self.source,
            None if self.select is None else tuple((structural_key(i.expr), i.name) for i in self.select),
            _opt_key(self.where),
            None if self.vector is None else self.vector._key(),
            tuple((structural_key(k.expr), k.descending) for k in self.order_by),
            tuple(structural_key(g) for g in self.group_by),
            _opt_key(self.limit),
            _opt_key(self.offset),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, QueryPlan) and self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]

    def to_sql(self, *, abbreviate: bool = False) -> str:
        """SQL text of the plan (reads back to an equal plan with ``parse_sql``)."""

        def sql(e: Expr) -> str:
            return to_sql(e, abbreviate=abbreviate)

        if self.select is None:
            items = "*"
        else:
            parts = []
            for item in self.select:
                text = sql(item.expr)
                if not isinstance(item.expr, Star) and item.name != text:
                    text += f" AS {quote_ident(item.name)}"
                parts.append(text)
            items = ", ".join(parts)
        out = [f"SELECT {items}"]
        if self.source is not None:
            out.append(f"FROM {quote_ident(self.source)}")
        if self.where is not None:
            out.append(f"WHERE {sql(self.where)}")
        if self.group_by:
            out.append("GROUP BY " + ", ".join(sql(g) for g in self.group_by))
        keys = []
        if self.vector is not None:
            v = self.vector
            keys.append(f"{sql(v.function())} {'DESC' if v.descending else 'ASC'}")
        keys += [f"{sql(k.expr)} {'DESC' if k.descending else 'ASC'}" for k in self.order_by]
        if keys:
            out.append("ORDER BY " + ", ".join(keys))
        if self.limit is not None:
            out.append(f"LIMIT {sql(self.limit)}")
        if self.offset is not None:
            out.append(f"OFFSET {sql(self.offset)}")
        return "\n".join(out)

    def __repr__(self) -> str:
        return f"QueryPlan(<{self.to_sql(abbreviate=True)}>)"


def bind(plan: QueryPlan, params: Mapping[str, Any] | Sequence[Any] | None) -> QueryPlan:
    """A copy of ``plan`` with every parameter replaced by a literal value.

    ``params`` is a dict for ``:name`` placeholders or a list/tuple for ``?`` placeholders.
    Vectors (numpy arrays, torch tensors, lists of numbers) become float32 numpy arrays;
    ``IN :ids`` takes a list; ``LIMIT :k`` / ``OFFSET :n`` take a non-negative int. Missing
    parameters raise :class:`~multimodal_store.errors.ParameterError`; unused ones are allowed.
    """
    used = plan.params()
    if any(isinstance(k, str) for k in used) and any(isinstance(k, int) for k in used):
        raise ParameterError("the query mixes named (:name) and positional (?) parameters; use one style")
    if params is not None and not isinstance(params, Mapping) and (
        isinstance(params, (str, bytes)) or not isinstance(params, Sequence)
    ):
        raise ParameterError(f"query parameters must be a dict or a list, got {type(params).__name__}")

    def b(e: Expr | None) -> Expr | None:
        return None if e is None else bind_params(e, params)

    def count(e: Expr | None, what: str) -> Expr | None:
        if isinstance(e, Param):
            return Literal(normalize_count(lookup_param(e.key, params), param_label(e.key), what))
        return b(e)

    vector = plan.vector
    if vector is not None:
        query = vector.query
        if isinstance(query, Param):
            query = Literal(normalize_vector(lookup_param(query.key, params), param_label(query.key)))
        elif isinstance(query, Literal):
            query = Literal(normalize_vector(query.value, "literal"))
        vector = VectorSearch(vector.column, query, vector.metric, vector.descending, vector.alias)
    return QueryPlan(
        source=plan.source,
        select=None if plan.select is None else [SelectItem(bind_params(i.expr, params), i.name) for i in plan.select],
        where=b(plan.where),
        vector=vector,
        order_by=[OrderKey(bind_params(k.expr, params), k.descending) for k in plan.order_by],
        group_by=[bind_params(g, params) for g in plan.group_by],
        limit=count(plan.limit, "LIMIT"),
        offset=count(plan.offset, "OFFSET"),
    )
