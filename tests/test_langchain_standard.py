"""LangChain's standard integration suites, run unmodified against the multimodal-store vector store
and retriever (sync and async), each test on a fresh dataset in a temporary folder."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_tests")

from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.retrievers import BaseRetriever
from langchain_core.vectorstores import VectorStore
from langchain_tests.integration_tests import (
    RetrieversIntegrationTests,
    VectorStoreIntegrationTests,
)

from multimodal_store.integrations.langchain import (
    MultimodalStoreRetriever,
    MultimodalStoreVectorStore,
)


class TestMultimodalStoreVectorStore(VectorStoreIntegrationTests):
    """Sync and async (``has_sync`` / ``has_async`` are both left True)."""

    @pytest.fixture
    def vectorstore(self, tmp_path: Any) -> Iterator[VectorStore]:
        store = MultimodalStoreVectorStore(tmp_path / "kb", self.get_embeddings())
        yield store
        store.delete()


class TestMultimodalStoreVectorStoreInMemory(VectorStoreIntegrationTests):
    """The same suite on a ``mem://`` dataset."""

    @pytest.fixture
    def vectorstore(self) -> Iterator[VectorStore]:
        yield MultimodalStoreVectorStore(f"mem://lc-standard-{uuid.uuid4().hex}", self.get_embeddings())


_TEXTS = ["cats purr", "dogs bark", "birds sing", "fish swim", "cows moo", "owls hoot"]


class TestMultimodalStoreRetriever(RetrieversIntegrationTests):
    _store: MultimodalStoreVectorStore | None = None

    @classmethod
    def _populated_store(cls) -> MultimodalStoreVectorStore:
        if cls._store is None:
            cls._store = MultimodalStoreVectorStore.from_texts(
                _TEXTS, DeterministicFakeEmbedding(size=16), metadatas=[{"n": i} for i in range(len(_TEXTS))]
            )
        return cls._store

    @property
    def retriever_constructor(self) -> type[BaseRetriever]:
        return MultimodalStoreRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"vectorstore": self._populated_store()}

    @property
    def retriever_query_example(self) -> str:
        return "which animal barks?"
