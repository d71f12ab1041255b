"""Answering with a multimodal LLM over what a retriever found: text as text, images as image blocks.

:func:`build_multimodal_query_engine` returns LlamaIndex's own
``RetrieverQueryEngine.from_args(..., multimodal=True)`` when the installed llama-index-core
has it and the LLM is a chat model: every retrieved node becomes a chat message of its content
blocks (an ``ImageNode``'s metadata and its image as an ``ImageBlock``). Otherwise it returns
:class:`MultimodalQueryEngine`, which sends one user message — the question, the text context
and one ``ImageBlock`` per retrieved image or video frame — to ``llm.chat``.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.llms.types import ChatMessage, ImageBlock, MessageRole, TextBlock
from llama_index.core.base.response.schema import Response
from llama_index.core.callbacks.base import CallbackManager
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.prompts import BasePromptTemplate
from llama_index.core.prompts.default_prompts import DEFAULT_TEXT_QA_PROMPT
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import ImageNode, MetadataMode, NodeWithScore, QueryBundle

__all__ = ["MultimodalQueryEngine", "build_multimodal_query_engine"]


def _native_multimodal(llm: Any) -> bool:
    """Whether ``RetrieverQueryEngine.from_args(multimodal=True)`` exists and fits ``llm``."""
    from llama_index.core.llms import LLM

    if "multimodal" not in inspect.signature(RetrieverQueryEngine.from_args).parameters:
        return False
    return isinstance(llm, LLM) and bool(getattr(llm.metadata, "is_chat_model", False))


def build_multimodal_query_engine(
    retriever: BaseRetriever,
    llm: Any,
    *,
    node_postprocessors: Sequence[BaseNodePostprocessor] | None = None,
    text_qa_template: BasePromptTemplate | None = None,
    native: bool | None = None,
    **kwargs: Any,
) -> BaseQueryEngine:
    """A query engine answering with ``llm`` from the text and images ``retriever`` returns.

    Args:
        retriever: e.g. :class:`~.retriever.MultimodalStoreRetriever`, or an index's retriever.
        llm: a multimodal chat LLM (a LlamaIndex ``LLM`` whose ``metadata.is_chat_model`` is
            true, or a legacy ``MultiModalLLM``).
        node_postprocessors: applied to the retrieved nodes before answering.
        text_qa_template: the prompt of :class:`MultimodalQueryEngine` (``{context_str}``,
            ``{query_str}``); passed on to ``RetrieverQueryEngine.from_args`` otherwise.
        native: force (True) or avoid (False) LlamaIndex's ``RetrieverQueryEngine`` with
            ``multimodal=True``; default: use it when available and ``llm`` is a chat LLM.
        **kwargs: passed to ``RetrieverQueryEngine.from_args`` (e.g. ``response_mode``).
    """
    use_native = _native_multimodal(llm) if native is None else native
    if use_native:
        if text_qa_template is not None:
            kwargs.setdefault("text_qa_template", text_qa_template)
        return RetrieverQueryEngine.from_args(
            retriever, llm=llm, multimodal=True,
            node_postprocessors=list(node_postprocessors) if node_postprocessors else None, **kwargs,
        )
    return MultimodalQueryEngine(retriever, llm, text_qa_template=text_qa_template,
                                 node_postprocessors=node_postprocessors,
                                 callback_manager=kwargs.get("callback_manager"))


def _image_block(node: ImageNode) -> ImageBlock:
    data = node.resolve_image()
    if isinstance(data, str):
        return ImageBlock(path=Path(data), image_mimetype=node.image_mimetype)
    return ImageBlock(image=data.getvalue(), image_mimetype=node.image_mimetype)


class MultimodalQueryEngine(BaseQueryEngine):
    """Retrieve, then ask a multimodal chat LLM once with the text context and the images.

    The user message holds the filled ``text_qa_template`` (text nodes as context, each image
    node listed by its text — caption or ``"frame at 00:12 of clip.mp4"``), then for each image
    node a short label and its ``ImageBlock`` (the stored bytes and mime type).
    """

    def __init__(
        self,
        retriever: BaseRetriever,
        llm: Any,
        *,
        text_qa_template: BasePromptTemplate | None = None,
        node_postprocessors: Sequence[BaseNodePostprocessor] | None = None,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        self._retriever = retriever
        self._llm = llm
        self._template = text_qa_template or DEFAULT_TEXT_QA_PROMPT
        self._postprocessors = list(node_postprocessors or [])
        super().__init__(callback_manager=callback_manager)

    def _get_prompts(self) -> dict[str, Any]:
        return {"text_qa_template": self._template}

    def _update_prompts(self, prompts: dict[str, Any]) -> None:
        if "text_qa_template" in prompts:
            self._template = prompts["text_qa_template"]

    def _get_prompt_modules(self) -> dict[str, Any]:
        return {}

    def _postprocess(self, nodes: list[NodeWithScore], query_bundle: QueryBundle) -> list[NodeWithScore]:
        for p in self._postprocessors:
            nodes = p.postprocess_nodes(nodes, query_bundle=query_bundle)
        return nodes

    def retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return self._postprocess(self._retriever.retrieve(query_bundle), query_bundle)

    async def aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return self._postprocess(await self._retriever.aretrieve(query_bundle), query_bundle)

    def message(self, query_bundle: QueryBundle, nodes: Sequence[NodeWithScore]) -> ChatMessage:
        """The user message sent to the LLM for ``nodes``."""
        images = [n.node for n in nodes if isinstance(n.node, ImageNode)]
        texts = [n.node.get_content(metadata_mode=MetadataMode.LLM) for n in nodes
                 if not isinstance(n.node, ImageNode)]
        texts += [f"[image {i + 1}] {node.get_content(metadata_mode=MetadataMode.LLM)}"
                  for i, node in enumerate(images)]
        prompt = self._template.format(context_str="\n\n".join(texts), query_str=query_bundle.query_str)
        blocks: list[Any] = [TextBlock(text=prompt)]
        for i, node in enumerate(images):
            blocks.append(TextBlock(text=f"[image {i + 1}]"))
            blocks.append(_image_block(node))
        return ChatMessage(role=MessageRole.USER, blocks=blocks)

    def _response(self, answer: Any, nodes: list[NodeWithScore]) -> Response:
        content = getattr(getattr(answer, "message", None), "content", None)
        return Response(response=str(content if content is not None else answer), source_nodes=nodes)

    def _query(self, query_bundle: QueryBundle) -> Response:
        nodes = self.retrieve(query_bundle)
        return self._response(self._llm.chat([self.message(query_bundle, nodes)]), nodes)

    async def _aquery(self, query_bundle: QueryBundle) -> Response:
        nodes = await self.aretrieve(query_bundle)
        return self._response(await self._llm.achat([self.message(query_bundle, nodes)]), nodes)
