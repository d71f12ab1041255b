"""Retrieved documents as LangChain standard content blocks, for any multimodal chat model.

A text document becomes a ``{"type": "text", "text": ...}`` block; an image document also
gets ``{"type": "image", "base64": ..., "mime_type": ...}`` with its stored bytes (built
with ``langchain_core.messages.content.create_image_block``). Chat model integrations
translate these standard blocks to their provider's format.

Image bytes are not in ``Document.metadata`` (metadata stays what the user gave); they are
fetched from ``images``: the vector store, the retriever (anything with
``get_images(ids)``) or a ready ``{id: (bytes, mime)}`` dict.

Example (LCEL)::

    chain = (
        {"question": RunnablePassthrough(), "documents": retriever}
        | multimodal_prompt(store)
        | chat_model
    )
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from langchain_core.documents import Document
from langchain_core.messages import HumanMessage
from langchain_core.prompt_values import ChatPromptValue
from langchain_core.runnables import RunnableLambda

__all__ = [
    "DEFAULT_INSTRUCTIONS",
    "ImageSource",
    "build_multimodal_message",
    "multimodal_prompt",
    "to_content_blocks",
]

DEFAULT_INSTRUCTIONS = (
    "Answer the question using the context below (texts and images). "
    "If the context does not contain the answer, say so."
)


class ImageSource(Protocol):
    """Anything that returns ``{id: (encoded bytes, mime type)}`` for the image documents among ids."""

    def get_images(self, ids: Sequence[str]) -> Mapping[str, tuple[bytes, str]]: ...


Images = ImageSource | Mapping[str, tuple[bytes, str]] | None


def _text_block(text: str) -> dict[str, Any]:
    try:
        from langchain_core.messages.content import create_text_block
    except ImportError:  # langchain-core < 1.0
        return {"type": "text", "text": text}
    return dict(create_text_block(text))


def _image_block(data: bytes, mime: str) -> dict[str, Any]:
    encoded = base64.b64encode(data).decode("ascii")
    try:
        from langchain_core.messages.content import create_image_block
    except ImportError:  # langchain-core < 1.0
        return {"type": "image", "base64": encoded, "mime_type": mime}
    return dict(create_image_block(base64=encoded, mime_type=mime))


def _resolve(documents: Sequence[Document], images: Images) -> Mapping[str, tuple[bytes, str]]:
    if images is None:
        return {}
    if isinstance(images, Mapping):
        return images
    ids = [d.id for d in documents if d.id is not None]
    return images.get_images(ids) if ids else {}


def _default_format(index: int, doc: Document, is_image: bool) -> str:
    kind = "image" if is_image else "text"
    content = doc.page_content.strip()
    return f"[{index}] ({kind}) {content}".rstrip()


def to_content_blocks(
    documents: Sequence[Document],
    images: Images = None,
    *,
    format_document: Callable[[int, Document, bool], str] | None = None,
) -> list[dict[str, Any]]:
    """Standard content blocks for ``documents``, in order.

    Each document gives a text block (``format_document(position, doc, is_image)``; by
    default ``"[1] (text) page content"``), followed, for image documents, by an image
    block with the stored bytes (base64) and mime type. ``images`` is the vector store,
    the retriever, or an ``{id: (bytes, mime)}`` dict; without it every document is text.
    """
    found = _resolve(documents, images)
    fmt = format_document or _default_format
    blocks: list[dict[str, Any]] = []
    for n, doc in enumerate(documents, start=1):
        image = found.get(doc.id) if doc.id is not None else None
        blocks.append(_text_block(fmt(n, doc, image is not None)))
        if image is not None:
            data, mime = image
            blocks.append(_image_block(data, mime))
    return blocks


def build_multimodal_message(
    question: str,
    documents: Sequence[Document],
    images: Images = None,
    *,
    instructions: str | None = DEFAULT_INSTRUCTIONS,
    format_document: Callable[[int, Document, bool], str] | None = None,
) -> HumanMessage:
    """One ``HumanMessage``: the instructions, the context blocks of ``documents`` (see
    :func:`to_content_blocks`) and the question, as standard content blocks."""
    blocks: list[dict[str, Any]] = []
    if instructions:
        blocks.append(_text_block(instructions))
    blocks.extend(to_content_blocks(documents, images, format_document=format_document))
    blocks.append(_text_block(f"Question: {question}"))
    return HumanMessage(content=blocks)  # type: ignore[arg-type]


def multimodal_prompt(
    images: Images = None,
    *,
    instructions: str | None = DEFAULT_INSTRUCTIONS,
    format_document: Callable[[int, Document, bool], str] | None = None,
) -> RunnableLambda[Mapping[str, Any], ChatPromptValue]:
    """A runnable mapping ``{"question": str, "documents": [Document, ...]}`` to a chat prompt
    holding the message of :func:`build_multimodal_message`; pipe it into any chat model."""

    def _build(inputs: Mapping[str, Any]) -> ChatPromptValue:
        message = build_multimodal_message(inputs["question"], inputs["documents"], images,
                                           instructions=instructions, format_document=format_document)
        return ChatPromptValue(messages=[message])

    return RunnableLambda(_build, name="multimodal_prompt")
