"""Running a :class:`~multimodal_store.plan.QueryPlan` against a dataset.

The pipeline, fragment by fragment so memory stays bounded:

1. filter: the WHERE expression is evaluated vectorised (pyarrow.compute) over only the
   columns it reads, giving a row mask;
2. rank: with a vector ORDER BY, the masked rows of the embedding column (memory-mapped,
   zero-copy) compete in :func:`multimodal_store.kernels.topk`; per-fragment winners are
   merged with :func:`multimodal_store.kernels.merge_topk`;
3. materialise: the projected columns are fetched for the final rows only, so media of
   rows that lost is never read or decoded.

A query never changes data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import QueryError
from .expr import Aggregate, Column, Expr, Function, Literal, Star, evaluate, mask_from, structural_key
from .plan import QueryPlan, SelectItem, VectorSearch
from .results import Results
from .scan import FragmentSource
from .storage.transaction import FragmentView
from .types import ColumnType, Embedding, Json, ReadContext, storage_to_float32

if TYPE_CHECKING:
    import torch

    from .dataset import Dataset

__all__ = ["VECTOR_FUNCTIONS", "execute"]

VECTOR_FUNCTIONS = {"cosine_similarity": "cosine", "inner_product": "ip", "l2_distance": "l2"}


@dataclass
class _Hits:
    """Rows chosen by a query: (fragment index, physical offsets) in result order, plus scores."""

    fragments: list[int]
    offsets: list[int]
    scores: np.ndarray | None


def execute(ds: Dataset, plan: QueryPlan) -> Results:
    """Execute a bound plan (no parameters left) and return its results."""
    frags = [fv for fv in ds.fragments() if fv.live_rows]
    _check_columns(ds, plan)
    limit = _int_value(plan.limit, "LIMIT")
    offset = _int_value(plan.offset, "OFFSET") or 0
    if plan.is_aggregate:
        return _aggregate(ds, frags, plan, limit, offset)
    if plan.vector is not None:
        hits = _vector_hits(ds, frags, plan.vector, plan.where, limit, offset)
    elif plan.order_by:
        hits = _sorted_hits(ds, frags, plan, limit, offset)
    else:
        hits = _scan_hits(ds, frags, plan.where, limit, offset)
    return _materialize(ds, frags, plan, hits)


# --------------------------------------------------------------------------- checks


def _check_columns(ds: Dataset, plan: QueryPlan) -> None:
    schema = ds.schema
    exprs: list[Expr] = []
    if plan.select:
        exprs += [s.expr for s in plan.select]
    if plan.where is not None:
        exprs.append(plan.where)
    exprs += [k.expr for k in plan.order_by] + list(plan.group_by)
    aliases = {s.name for s in plan.select or []}
    exprs = [e for e in exprs if not isinstance(e, Star)]
    for e in exprs:
        for name in sorted(e.columns()):
            if name not in schema and name not in aliases:
                schema.field(name)  # raises ColumnNotFoundError listing the available columns
    if plan.vector is not None:
        _embedding_type(ds, plan.vector.column, plan.vector.metric)


def _embedding_type(ds: Dataset, column: str, metric: str) -> Embedding:
    ctype = ds.schema[column]
    if not isinstance(ctype, Embedding):
        fn = next((k for k, v in VECTOR_FUNCTIONS.items() if v == metric), metric)
        embeddings = [n for n, t in ds.schema.items() if isinstance(t, Embedding)]
        raise QueryError(
            f"{fn}() needs an Embedding column, but {column!r} is {ctype!r}; "
            f"embedding columns: {', '.join(embeddings) or '(none)'}"
        )
    return ctype


def _int_value(e: Expr | None, what: str) -> int | None:
    if e is None:
        return None
    value = e.value if isinstance(e, Literal) else e
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 0:
        raise QueryError(f"{what} must be a non-negative integer, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------- filter


def _live_mask(ds: Dataset, fv: FragmentView, where: Expr | None) -> np.ndarray | None:
    """Mask over the live rows of ``fv``; None means every live row passes."""
    if where is None:
        return None
    return mask_from(evaluate(where, FragmentSource(ds, fv)))


def _scan_hits(ds: Dataset, frags: list[FragmentView], where: Expr | None, limit: int | None,
               offset: int) -> _Hits:
    need = None if limit is None else offset + limit
    fr_idx: list[int] = []
    offs: list[int] = []
    for i, fv in enumerate(frags):
        if need is not None and len(offs) >= need:
            break
        live = fv.live_offsets()
        mask = _live_mask(ds, fv, where)
        chosen = live if mask is None else live[mask]
        if need is not None:
            chosen = chosen[: need - len(offs)]
        fr_idx += [i] * len(chosen)
        offs += chosen.tolist()
    stop = None if limit is None else offset + limit
    return _Hits(fr_idx[offset:stop], offs[offset:stop], None)


def _sorted_hits(ds: Dataset, frags: list[FragmentView], plan: QueryPlan, limit: int | None,
                 offset: int) -> _Hits:
    fr_idx: list[np.ndarray] = []
    offs: list[np.ndarray] = []
    keys: list[list[pa.Array]] = [[] for _ in plan.order_by]
    aliases = {s.name: s.expr for s in plan.select or []}
    for i, fv in enumerate(frags):
        live = fv.live_offsets()
        mask = _live_mask(ds, fv, plan.where)
        chosen = live if mask is None else live[mask]
        if not len(chosen):
            continue
        src = FragmentSource(ds, fv, chosen)
        for j, key in enumerate(plan.order_by):
            expr = key.expr
            if isinstance(expr, Column) and expr.name not in ds.schema and expr.name in aliases:
                expr = aliases[expr.name]
            keys[j].append(_sortable(evaluate(expr, src)))
        fr_idx.append(np.full(len(chosen), i))
        offs.append(chosen)
    if not offs:
        return _Hits([], [], None)
    sort_table = pa.table({f"k{j}": pa.chunked_array(k) for j, k in enumerate(keys)})
    order = pc.sort_indices(sort_table, sort_keys=[
        (f"k{j}", "descending" if key.descending else "ascending", "at_end") for j, key in enumerate(plan.order_by)
    ]).to_numpy()
    stop = None if limit is None else offset + limit
    order = order[offset:stop]
    return _Hits(np.concatenate(fr_idx)[order].tolist(), np.concatenate(offs)[order].tolist(), None)


def _sortable(arr: Any) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if isinstance(arr.type, pa.ExtensionType):
        arr = arr.storage
    if pa.types.is_nested(arr.type) or pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type):
        raise QueryError(f"cannot ORDER BY a column of type {arr.type}")
    return arr


# --------------------------------------------------------------------------- vector search


def _query_vector(vs: VectorSearch, ctype: Embedding) -> np.ndarray:
    q = vs.query.value if isinstance(vs.query, Literal) else None
    if q is None:
        raise QueryError(f"the query vector for {vs.column!r} must be a bound parameter or an array literal")
    if hasattr(q, "detach"):
        q = q.detach().cpu().float().numpy()
    try:
        vec = np.asarray(q, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise QueryError(f"the query vector for {vs.column!r} is not numeric: {exc}") from exc
    if vec.ndim == 2 and vec.shape[0] == 1:
        vec = vec[0]
    if vec.ndim != 1:
        raise QueryError(f"the query vector must be 1-D of size {ctype.dim}, got shape {vec.shape}")
    if vec.shape[0] != ctype.dim:
        raise QueryError(f"query vector size {vec.shape[0]} does not match column {vs.column!r} dim {ctype.dim}")
    if not np.isfinite(vec).all():
        raise QueryError("the query vector contains NaN or inf")
    return vec


def embedding_matrix(ds: Dataset, fv: FragmentView, column: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The physical embedding rows of a fragment as a zero-copy ``(rows, dim)`` array, and its null mask."""
    ctype = ds.schema[column]
    assert isinstance(ctype, Embedding)
    arr = ds.physical_column(fv, ds.schema.field(column).id)
    storage = arr.storage if isinstance(arr, pa.ExtensionArray) else arr
    valid = None
    if storage.null_count:
        valid = np.asarray(storage.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    values = storage.values
    if storage.offset:
        values = values.slice(storage.offset * ctype.dim, len(storage) * ctype.dim)
    if values.null_count:  # an all-null column filled for rows written before the column existed
        return np.zeros((len(storage), ctype.dim), np.float32), np.zeros(len(storage), dtype=bool)
    flat = values.to_numpy(zero_copy_only=True)
    return flat.reshape(len(storage), ctype.dim), valid


def _corpus(ds: Dataset, fv: FragmentView, column: str, ctype: Embedding
            ) -> tuple[torch.Tensor, np.ndarray | None, torch.Tensor]:
    """The fragment's embeddings as a zero-copy tensor, their null mask and their (cached) row norms."""
    import torch

    from .kernels import row_norms

    mat, valid = embedding_matrix(ds, fv, column)
    if ctype.dtype == "bfloat16":
        t = torch.from_numpy(np.ascontiguousarray(mat).view(np.int16)).view(torch.bfloat16)
    elif not mat.flags.writeable:
        # torch warns on read-only numpy buffers; frombuffer shares the memory without a copy
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            t = torch.from_numpy(mat)
    else:
        t = torch.from_numpy(mat)
    fid = ds.schema.field(column).id
    group = next((g.path for g in fv.groups if fid in g.fields), f"<default-{fv.id}>")
    norms = ds._cache.get(("norms", group, fid), lambda: row_norms(t))
    return t, valid, norms


def _vector_hits(ds: Dataset, frags: list[FragmentView], vs: VectorSearch, where: Expr | None,
                 limit: int | None, offset: int) -> _Hits:
    from .kernels import merge_topk, topk

    ctype = _embedding_type(ds, vs.column, vs.metric)
    query = _query_vector(vs, ctype)
    total = sum(fv.live_rows for fv in frags)
    k = total if limit is None else min(offset + limit, total)
    if k == 0:
        return _Hits([], [], np.zeros(0, np.float32))
    best_first = vs.descending if vs.metric != "l2" else not vs.descending
    parts = []
    bases = np.cumsum([0] + [fv.rows for fv in frags])
    import torch

    q = torch.from_numpy(query).reshape(1, -1)
    for i, fv in enumerate(frags):
        corpus, valid, norms = _corpus(ds, fv, vs.column, ctype)
        mask = _competing_rows(fv, _live_mask(ds, fv, where), valid)
        eligible = fv.rows if mask is None else int(np.count_nonzero(mask))
        if eligible == 0:
            continue
        full = eligible == fv.rows
        scores, idx = _ranked(q, corpus, norms, min(k, eligible), vs.metric,
                              None if full or mask is None else torch.from_numpy(mask), best_first, topk)
        parts.append((scores, idx + int(bases[i])))
    if not parts:
        return _Hits([], [], np.zeros(0, np.float32))
    # a worst-first order is ranked as "larger is better" values (negated similarity, or distance)
    metric_for_merge = vs.metric if best_first else "ip"
    scores, idx = merge_topk(parts, k, metric=metric_for_merge)
    s = scores[0].numpy()
    g = idx[0].numpy()
    keep = g >= 0
    s, g = s[keep], g[keep]
    if not best_first and vs.metric != "l2":
        s = -s  # worst-first similarity was ranked as its negation
    s, g = s[offset:], g[offset:]
    fr = (np.searchsorted(bases, g, side="right") - 1).astype(np.int64)
    return _Hits(fr.tolist(), (g - bases[fr]).tolist(), s.astype(np.float32))


def _competing_rows(fv: FragmentView, live_mask: np.ndarray | None, valid: np.ndarray | None) -> np.ndarray | None:
    """Mask over the physical rows of ``fv`` that may compete: live, passing the filter (``live_mask``,
    over the live rows), with a non-null embedding (``valid``); None when every row may."""
    if len(fv.deleted) == 0:
        mask = live_mask  # live rows are all the physical rows, in order
    else:
        mask = np.zeros(fv.rows, dtype=bool)
        live = fv.live_offsets()
        mask[live if live_mask is None else live[live_mask]] = True
    if valid is not None:
        mask = valid if mask is None else mask & valid
    return mask


def _ranked(q: torch.Tensor, corpus: torch.Tensor, norms: torch.Tensor, k: int, metric: str,
            mask: torch.Tensor | None, best_first: bool, topk: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k best first, or (for an explicit opposite direction) bottom-k as negated scores."""
    if best_first:
        return topk(q, corpus, k, metric=metric, mask=mask,  # type: ignore[no-any-return,unused-ignore]
                    corpus_norms=None if metric == "ip" else norms)
    import torch

    # the worst matches first: rank negated similarities (or negated distances) best first
    sims = _full_scores(q, corpus, metric)
    neg = -sims if metric != "l2" else sims
    if mask is not None:
        neg = torch.where(mask.reshape(1, -1), neg, torch.tensor(float("-inf")))
    vals, idx = torch.topk(neg, k, dim=1, largest=True, sorted=True)
    # ties: lowest index first, like the kernels
    order = np.lexsort((idx[0].numpy(), -vals[0].numpy()))
    vals, idx = vals[:, order], idx[:, order]
    return vals, idx


def _full_scores(q: torch.Tensor, corpus: torch.Tensor, metric: str) -> torch.Tensor:
    import torch

    c = corpus.float()
    qf = q.float()
    if metric == "ip":
        return qf @ c.T
    if metric == "cosine":
        qn = qf / qf.norm(dim=1, keepdim=True).clamp_min(1e-30)
        cn = c.norm(dim=1).clamp_min(1e-30)
        out = (qn @ c.T) / cn
        return torch.where(c.norm(dim=1) == 0, torch.zeros_like(out), out)
    return torch.cdist(qf, c)


# --------------------------------------------------------------------------- materialise


def _select_items(ds: Dataset, plan: QueryPlan) -> list[SelectItem]:
    star = [SelectItem(Column(n), n) for n in ds.schema.columns]
    if plan.select is not None:
        items: list[SelectItem] = []
        for it in plan.select:
            items.extend(star if isinstance(it.expr, Star) else [it])
        return items
    items = list(star)
    if plan.vector is not None and plan.vector.alias:
        items.append(SelectItem(Function(_fn_name(plan.vector.metric), (Column(plan.vector.column), plan.vector.query)),
                                plan.vector.alias))
    return items


def _fn_name(metric: str) -> str:
    return next(k for k, v in VECTOR_FUNCTIONS.items() if v == metric)


def _materialize(ds: Dataset, frags: list[FragmentView], plan: QueryPlan, hits: _Hits) -> Results:
    items = _select_items(ds, plan)
    n = len(hits.offsets)
    fr = np.asarray(hits.fragments, dtype=np.int64)
    off = np.asarray(hits.offsets, dtype=np.int64)
    columns: dict[str, list[pa.Array]] = {it.name: [] for it in items}
    types: dict[str, ColumnType | None] = {}
    positions: list[np.ndarray] = []
    # fetch per fragment (each fragment's winners together), then restore the result order
    for i in sorted(set(fr.tolist())):
        sel = np.flatnonzero(fr == i)
        positions.append(sel)
        src = FragmentSource(ds, frags[i], off[sel])
        for it in items:
            arr, ctype = _item_values(ds, it, src, frags[i], off[sel], plan, hits, sel)
            columns[it.name].append(arr)
            types.setdefault(it.name, ctype)
    if n:
        inverse = np.argsort(np.concatenate(positions), kind="stable")
        table = pa.table({
            name: pa.chunked_array(parts).combine_chunks().take(pa.array(inverse)) if len(parts) > 1
            else parts[0].take(pa.array(inverse)) for name, parts in columns.items()
        })
    else:
        table = pa.table({it.name: pa.array([], type=_empty_type(ds, it)) for it in items})
        types = {it.name: _item_type(ds, it) for it in items}
    return Results(table, types, hits.scores, ReadContext(ds.storage))


def _item_type(ds: Dataset, it: SelectItem) -> ColumnType | None:
    if isinstance(it.expr, Column) and it.expr.name in ds.schema:
        return ds.schema[it.expr.name]
    return None


def _empty_type(ds: Dataset, it: SelectItem) -> pa.DataType:
    ctype = _item_type(ds, it)
    if ctype is not None:
        t = ctype.arrow_type
        return t.storage_type if isinstance(t, pa.ExtensionType) else t
    if isinstance(it.expr, Function) and it.expr.name in VECTOR_FUNCTIONS:
        return pa.float32()
    return pa.null()


def _item_values(ds: Dataset, it: SelectItem, src: FragmentSource, fv: FragmentView, offsets: np.ndarray,
                 plan: QueryPlan, hits: _Hits, sel: np.ndarray) -> tuple[pa.Array, ColumnType | None]:
    e = it.expr
    if isinstance(e, Column) and e.name in ds.schema:
        arr = ds.physical_column(fv, ds.schema.field(e.name).id).take(pa.array(offsets, type=pa.int64()))
        if isinstance(arr.type, pa.ExtensionType):
            arr = arr.storage
        return arr, ds.schema[e.name]
    if isinstance(e, Function) and e.name in VECTOR_FUNCTIONS:
        return _score_values(ds, e, fv, offsets, plan, hits, sel), None
    arr = evaluate(e, src)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if isinstance(arr.type, pa.ExtensionType):
        arr = arr.storage
    ctype = Json() if _is_json_value(ds, e) else None
    return arr, ctype


def _is_json_value(ds: Dataset, e: Expr) -> bool:
    from .expr import JsonPath

    return isinstance(e, JsonPath) and not e.as_text


def _score_values(ds: Dataset, fn: Function, fv: FragmentView, offsets: np.ndarray, plan: QueryPlan,
                  hits: _Hits, sel: np.ndarray) -> pa.Array:
    if len(fn.args) != 2 or not isinstance(fn.args[0], Column):
        raise QueryError(f"{fn.name}() takes (embedding_column, query_vector)")
    metric = VECTOR_FUNCTIONS[fn.name]
    column = fn.args[0].name
    vs = plan.vector
    same = (vs is not None and hits.scores is not None and vs.column == column and vs.metric == metric
            and _same_query(vs.query, fn.args[1]))
    if same and hits.scores is not None:
        return pa.array(hits.scores[sel], type=pa.float32())
    import torch

    ctype = _embedding_type(ds, column, metric)
    query = _query_vector(VectorSearch(column, fn.args[1], metric, True), ctype)  # type: ignore[arg-type]
    mat, _ = embedding_matrix(ds, fv, column)
    rows = storage_to_float32(np.asarray(mat[offsets]), ctype.dtype)
    scores = _full_scores(torch.from_numpy(query).reshape(1, -1), torch.from_numpy(rows), metric)[0]
    return pa.array(scores.numpy().astype(np.float32), type=pa.float32())


def _same_query(a: Expr, b: Expr) -> bool:
    if isinstance(a, Literal) and isinstance(b, Literal):
        return a is b or bool(np.array_equal(np.asarray(_vec(a.value)), np.asarray(_vec(b.value))))
    return a is b


def _vec(v: Any) -> Any:
    return v.detach().cpu().numpy() if hasattr(v, "detach") else v


# --------------------------------------------------------------------------- aggregates


_AGG = {"count": "count", "sum": "sum", "avg": "mean", "min": "min", "max": "max"}


def _aggregate(ds: Dataset, frags: list[FragmentView], plan: QueryPlan, limit: int | None,
               offset: int) -> Results:
    if plan.vector is not None:
        raise QueryError("ORDER BY a vector function cannot be combined with GROUP BY or aggregates")
    items = plan.select or []
    group_names = [f"g{j}" for j in range(len(plan.group_by))]
    agg_inputs: dict[str, Expr | None] = {}
    for it in items:
        if isinstance(it.expr, Aggregate):
            agg_inputs[it.name] = it.expr.arg
        elif not any(_same_expr(it.expr, g) for g in plan.group_by):
            raise QueryError(f"{it.name!r} must appear in GROUP BY or be inside an aggregate function")
    cols: dict[str, list[pa.Array]] = {n: [] for n in group_names}
    cols.update({f"a{j}": [] for j in range(len(agg_inputs))})
    count = 0
    for fv in frags:
        live = fv.live_offsets()
        mask = _live_mask(ds, fv, plan.where)
        chosen = live if mask is None else live[mask]
        if not len(chosen):
            continue
        count += len(chosen)
        src = FragmentSource(ds, fv, chosen)
        for j, g in enumerate(plan.group_by):
            cols[f"g{j}"].append(_plain(evaluate(g, src)))
        for j, arg in enumerate(agg_inputs.values()):
            cols[f"a{j}"].append(pa.nulls(len(chosen), pa.int8()) if arg is None else _plain(evaluate(arg, src)))
    aggs = [it for it in items if isinstance(it.expr, Aggregate)]
    if count:
        table = pa.table({n: pa.chunked_array(v) for n, v in cols.items()})
    else:
        table = None
    if plan.group_by:
        if table is None:
            out = {it.name: pa.array([], type=pa.null()) for it in items}
            return Results(pa.table(out), {}, None)
        spec: list[tuple[Any, ...]] = []
        for j, it in enumerate(aggs):
            a = it.expr
            assert isinstance(a, Aggregate)
            func = _AGG[a.func.lower()]
            if func == "count" and a.arg is None:
                spec.append((f"a{j}", "count", pc.CountOptions(mode="all")))
            elif a.distinct:
                spec.append((f"a{j}", "count_distinct" if func == "count" else func))
            else:
                spec.append((f"a{j}", func))
        grouped = table.group_by(group_names, use_threads=False).aggregate(spec)
        names = {f"a{j}_{s[1]}": it.name for j, (it, s) in enumerate(zip(aggs, spec, strict=False))}
        out_cols = {}
        for it in items:
            if isinstance(it.expr, Aggregate):
                key = next(k for k, v in names.items() if v == it.name)
                out_cols[it.name] = grouped.column(key)
            else:
                gi = next(j for j, g in enumerate(plan.group_by) if _same_expr(it.expr, g))
                out_cols[it.name] = grouped.column(f"g{gi}")
        result = pa.table(out_cols)
    else:
        row = {}
        for j, it in enumerate(aggs):
            a = it.expr
            assert isinstance(a, Aggregate)
            func = _AGG[a.func.lower()]
            if table is None:
                row[it.name] = pa.array([0 if func == "count" else None])
                continue
            arr = table.column(f"a{j}")
            if func == "count":
                v = count if a.arg is None else (
                    pc.count_distinct(arr).as_py() if a.distinct else pc.count(arr).as_py())
                row[it.name] = pa.array([v], type=pa.int64())
            else:
                row[it.name] = pa.array([getattr(pc, func)(arr).as_py()])
        result = pa.table(row)
    if plan.order_by:
        keys = []
        for j, k in enumerate(plan.order_by):
            name = k.expr.name if isinstance(k.expr, Column) else None
            match = next((it.name for it in items if it.name == name or _same_expr(it.expr, k.expr)), None)
            if match is None:
                raise QueryError("ORDER BY of an aggregate query must name a selected column or alias")
            keys.append((match, "descending" if k.descending else "ascending"))
            del j
        result = result.take(pc.sort_indices(result, sort_keys=keys))
    stop = None if limit is None else offset + limit
    result = result.slice(offset, None if stop is None else stop - offset)
    return Results(result, {}, None)


def _plain(arr: Any) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr.storage if isinstance(arr.type, pa.ExtensionType) else arr


def _same_expr(a: Expr, b: Expr) -> bool:
    return bool(structural_key(a) == structural_key(b))
