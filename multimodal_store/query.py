"""Query entry points: SQL text and the Python builder, both producing one :class:`QueryPlan`.

Example:
    >>> import numpy as np, multimodal_store as mms
    >>> from multimodal_store import col, types
    >>> ds = mms.open("mem://query-doc")
    >>> ds.add_column("kind", types.Text()); ds.add_column("emb", types.Embedding(2))
    >>> ds.append([{"kind": "image", "emb": [1, 0]}, {"kind": "text", "emb": [0, 1]}])
    >>> ds.search([1, 0], column="emb").where(col("kind") == "image").limit(1).to_list()[0]["kind"]
    'image'
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .errors import QueryError
from .execute import VECTOR_FUNCTIONS, execute
from .expr import Column, Expr, Literal, col
from .plan import OrderKey, QueryPlan, SelectItem, VectorSearch, bind
from .results import Results
from .scan import to_predicate
from .sql import parse_sql
from .types import Embedding

if TYPE_CHECKING:
    import pyarrow as pa

    from .dataset import Dataset

__all__ = ["SearchBuilder", "query", "run_sql"]

Params = Mapping[str, Any] | Sequence[Any] | None


def run_sql(ds: Dataset, sql: str, params: Params = None) -> Results:
    """Parse ``sql``, bind ``params`` as values and execute it on ``ds`` (any FROM name is accepted)."""
    plan = bind(parse_sql(sql), params)
    return execute(ds, plan)


def query(sql: str, params: Params = None) -> Results:
    """Run a SQL query whose FROM names a dataset url in double quotes, e.g. ``FROM "./data/kb"``."""
    from .dataset import open_read_only

    plan = parse_sql(sql)
    if not plan.source:
        raise QueryError('multimodal_store.query() needs FROM "<dataset url>"; on a dataset use ds.query()')
    source = plan.source
    if not (os.path.exists(source) or "://" in source):
        raise QueryError(f"FROM {source!r} is not a dataset url or path; quote the url: FROM \"./path/to/dataset\"")
    return execute(open_read_only(source), bind(plan, params))


class SearchBuilder:
    """A query built in Python; setters return the builder, ``to_*`` methods execute.

    Example:
        >>> ds.search(vec, column="clip_embedding").where(col("metadata")["department"] == "engineering") \\
        ...   .select(["image", "text"]).limit(10).to_results()     # doctest: +SKIP
    """

    def __init__(self, ds: Dataset, vector: Any = None, column: str | None = None, metric: str = "cosine") -> None:
        if metric not in ("cosine", "ip", "l2"):
            raise QueryError(f"metric must be 'cosine', 'ip' or 'l2', got {metric!r}")
        self._ds = ds
        self._vector = vector
        self._column = column
        self._metric = metric
        self._where: Expr | None = None
        self._select: list[SelectItem] | None = None
        self._limit: int | None = 10 if vector is not None else None
        self._offset = 0
        self._order: list[OrderKey] = []
        self._descending: bool | None = None

    def where(self, predicate: Expr | str | None) -> SearchBuilder:
        """Keep rows matching an expression (``col("a") == 1``) or a SQL predicate string; ANDed when repeated."""
        if predicate is None:
            return self
        pred = to_predicate(predicate)
        self._where = pred if self._where is None else (self._where & pred)
        return self

    def select(self, columns: Sequence[str | Expr] | Mapping[str, Expr]) -> SearchBuilder:
        """Project columns (names, expressions, or a mapping of output name to expression)."""
        items: list[SelectItem] = []
        if isinstance(columns, Mapping):
            items = [SelectItem(e if isinstance(e, Expr) else col(str(e)), name) for name, e in columns.items()]
        else:
            for c in columns:
                items.append(SelectItem(col(c), c) if isinstance(c, str) else SelectItem(c, repr(c)))
        self._select = items
        return self

    def limit(self, k: int | None) -> SearchBuilder:
        """Return at most ``k`` rows (None: no limit)."""
        self._limit = k
        return self

    def offset(self, n: int) -> SearchBuilder:
        """Skip the first ``n`` rows."""
        self._offset = n
        return self

    def order_by(self, column: str | Expr, descending: bool = False) -> SearchBuilder:
        """Order by a plain column (after the vector ranking, if any)."""
        self._order.append(OrderKey(col(column) if isinstance(column, str) else column, descending))
        return self

    def _embedding_column(self) -> str:
        embeddings = [n for n, t in self._ds.schema.items() if isinstance(t, Embedding)]
        if self._column is not None:
            return self._column
        if len(embeddings) == 1:
            return embeddings[0]
        raise QueryError(
            f"search() needs column=... when the dataset has {len(embeddings)} embedding columns "
            f"({', '.join(embeddings) or 'none'})"
        )

    def plan(self) -> QueryPlan:
        """The query plan this builder describes."""
        vector = None
        if self._vector is not None:
            vector = VectorSearch(self._embedding_column(), Literal(self._vector), self._metric,  # type: ignore[arg-type]
                                  descending=self._metric != "l2")
        return QueryPlan(
            source=None, select=self._select, where=self._where, vector=vector, order_by=list(self._order),
            group_by=[], limit=None if self._limit is None else Literal(int(self._limit)),
            offset=Literal(int(self._offset)) if self._offset else None,
        )

    def to_results(self) -> Results:
        """Execute and return :class:`Results`."""
        return execute(self._ds, self.plan())

    def to_arrow(self) -> pa.Table:
        """Execute and return a pyarrow Table (stored form, with a ``score`` column when ranked)."""
        return self.to_results().to_arrow()

    def to_pandas(self) -> Any:
        """Execute and return a pandas DataFrame."""
        return self.to_results().to_pandas()

    def to_list(self) -> list[dict[str, Any]]:
        """Execute and return decoded row dicts."""
        return self.to_results().to_pylist()


del Column, VECTOR_FUNCTIONS
