"""Random sequences of append / update / delete / commit / rollback / reopen match a plain-Python model."""

from __future__ import annotations

import shutil
import tempfile
import warnings

import hypothesis.strategies as st
import numpy as np
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import multimodal_store as mms
from multimodal_store import types

texts = st.one_of(st.none(), st.text(max_size=5))


class DatasetModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp()
        self.url = f"{self.dir}/kb"
        self.ds = mms.open(self.url)
        self.ds.add_column("id", types.Int64())
        self.ds.add_column("text", types.Text())
        self.ds.add_column("emb", types.Embedding(2))
        self.ds.commit("schema")
        self.next_id = 0
        self.working: list[dict] = []  # what this handle sees
        self.committed: list[dict] = []  # what a fresh open sees

    def teardown(self) -> None:
        self.ds.rollback()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(values=st.lists(texts, min_size=1, max_size=4))
    def append(self, values: list) -> None:
        rows = []
        for v in values:
            rows.append({"id": self.next_id, "text": v, "emb": [float(self.next_id), 1.0]})
            self.next_id += 1
        self.ds.append(rows)
        self.working.extend(rows)

    @precondition(lambda self: self.working)
    @rule(data=st.data(), value=texts)
    def update(self, data: st.DataObject, value: str | None) -> None:
        idx = sorted(set(data.draw(st.lists(st.integers(0, len(self.working) - 1), min_size=1, max_size=3))))
        assert self.ds.update(idx, {"text": value}) == len(idx)
        for i in idx:
            self.working[i] = {**self.working[i], "text": value}

    @precondition(lambda self: self.working)
    @rule(data=st.data())
    def update_embedding(self, data: st.DataObject) -> None:
        i = data.draw(st.integers(0, len(self.working) - 1))
        self.ds.update([i], {"emb": [[-1.0, float(i)]]})
        self.working[i] = {**self.working[i], "emb": [-1.0, float(i)]}

    @precondition(lambda self: self.working)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        idx = sorted(set(data.draw(st.lists(st.integers(0, len(self.working) - 1), min_size=1, max_size=3))))
        assert self.ds.delete(idx) == len(idx)
        self.working = [r for i, r in enumerate(self.working) if i not in set(idx)]

    @rule()
    def commit(self) -> None:
        self.ds.commit()
        self.committed = list(self.working)

    @rule()
    def rollback(self) -> None:
        self.ds.rollback()
        self.working = list(self.committed)

    @rule()
    def reopen(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", mms.UncommittedChangesWarning)
            self.ds.rollback()
            self.ds = mms.open(self.url)
        self.working = list(self.committed)

    @precondition(lambda self: not self.ds.has_uncommitted_changes and self.committed)
    @rule()
    def compact(self) -> None:
        self.ds.compact()

    @invariant()
    def handle_matches_model(self) -> None:
        got = [{"id": r["id"], "text": r["text"], "emb": r["emb"].tolist()} for r in self.ds]
        assert got == self.working
        assert len(self.ds) == len(self.working)

    @invariant()
    def disk_matches_committed(self) -> None:
        fresh = mms.open_read_only(self.url)
        table = fresh.to_arrow(["id", "text"]).to_pylist()
        assert table == [{"id": r["id"], "text": r["text"]} for r in self.committed]
        emb = fresh["emb"].numpy() if len(fresh) else np.zeros((0, 2))
        assert emb.tolist() == [r["emb"] for r in self.committed]


DatasetModel.TestCase.settings = settings(max_examples=40, stateful_step_count=20, deadline=None)
TestDatasetModel = DatasetModel.TestCase
