"""Tiny *random* CLIP and SigLIP models, built offline in a fraction of a second.

They have the architecture, tokenizer and image processor of the real models (so they load
through :class:`~multimodal_store.embeddings.clip.CLIPEmbedder` exactly like
``openai/clip-vit-base-patch32`` would) but random weights and a byte-level BPE vocabulary
trained here on a few sentences: their vectors carry no meaning. They exist for tests, the
CLI demo and the notebooks, which must run without downloading a model.

Building is seeded: the same ``seed`` gives the same weights and tokenizer.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

__all__ = ["TINY_CORPUS", "build_tiny_clip", "build_tiny_siglip"]

#: The sentences the tiny tokenizers are trained on.
TINY_CORPUS: tuple[str, ...] = (
    "a photo of a cat", "a photo of a dog", "a photo of a car", "a red car parked on the street",
    "a black cat sleeping on a sofa", "a dog running on the beach", "a bowl of coffee on a table",
    "an astronaut in a space suit", "a group of people walking in a city at night",
    "the quick brown fox jumps over the lazy dog", "a diagram of a neural network",
    "a plate of food with vegetables and rice", "a mountain landscape with snow and trees",
    "a screenshot of a web page with text", "a man riding a bicycle down the road",
    "a woman holding an umbrella in the rain", "two birds sitting on a branch",
    "video frame of a news studio", "a close up of a flower", "a chart showing sales by month",
)

_HIDDEN = 64
_LAYERS = 2
_HEADS = 2
_INTERMEDIATE = 128
_IMAGE = 224
_PATCH = 32


def _require_transformers() -> Any:
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the tiny models need transformers and tokenizers; install them with: "
            "pip install 'multimodal-store[clip]'"
        ) from exc
    return transformers


_CLIP_SPLIT = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def _bpe_merges(words: dict[tuple[str, ...], int], n_merges: int) -> list[tuple[str, str]]:
    """Plain BPE training, deterministic (ties go to the smallest pair): ``tokenizers``'
    trainer breaks ties in hash order, so its output changes from run to run."""
    merges: list[tuple[str, str]] = []
    corpus = dict(words)
    for _ in range(n_merges):
        counts: dict[tuple[str, str], int] = {}
        for word, freq in corpus.items():
            for pair in itertools.pairwise(word):
                counts[pair] = counts.get(pair, 0) + freq
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))
        if counts[best] < 2:
            break
        merges.append(best)
        merged: dict[tuple[str, ...], int] = {}
        for word, freq in corpus.items():
            out: list[str] = []
            i = 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] = merged.get(tuple(out), 0) + freq
        corpus = merged
    return merges


def _vocab(specials: list[str], alphabet: list[str], merges: list[tuple[str, str]]) -> dict[str, int]:
    vocab: dict[str, int] = {}
    for piece in [*specials, *alphabet, *(a + b for a, b in merges)]:
        vocab.setdefault(piece, len(vocab))
    return vocab


def _clip_bpe(n_merges: int, specials: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """vocab and merges of a CLIP-style BPE (bytes, word ends marked "</w>") on the corpus."""
    from tokenizers import Regex, normalizers, pre_tokenizers

    norm = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_CLIP_SPLIT), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    words: dict[tuple[str, ...], int] = {}
    for text in TINY_CORPUS:
        for piece, _ in pre.pre_tokenize_str(norm.normalize_str(text)):
            word = (*piece[:-1], piece[-1] + "</w>")
            words[word] = words.get(word, 0) + 1
    merges = _bpe_merges(words, n_merges)
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    return _vocab(specials, [*alphabet, *(c + "</w>" for c in alphabet)], merges), merges


def _byte_bpe(n_merges: int, specials: list[str]) -> Any:
    """A GPT-2 style byte-level BPE ``tokenizers.Tokenizer`` (lower-cased) on the corpus."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    norm = normalizers.Lowercase()
    pre = pre_tokenizers.ByteLevel(add_prefix_space=True)
    words: dict[tuple[str, ...], int] = {}
    for text in TINY_CORPUS:
        for piece, _ in pre.pre_tokenize_str(norm.normalize_str(text)):
            words[tuple(piece)] = words.get(tuple(piece), 0) + 1
    merges = _bpe_merges(words, n_merges)
    vocab = _vocab(specials, sorted(pre_tokenizers.ByteLevel.alphabet()), merges)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=specials[-1]))
    tok.normalizer = norm
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    return tok


def _seed(seed: int) -> Any:
    import torch

    torch.manual_seed(seed)
    return torch


def build_tiny_clip(path: str | os.PathLike[str], *, seed: int = 0, projection_dim: int = 32) -> str:
    """Save a tiny random CLIP (model, tokenizer, image processor) to ``path``; returns it.

    Hidden size 64, 2 layers, 224 px images in 32 px patches, ``projection_dim``-d
    embeddings; about 1.5 MB. Load it with ``CLIPEmbedder(path)``.
    """
    transformers = _require_transformers()
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTokenizer

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    bos, eos = "<|startoftext|>", "<|endoftext|>"
    vocab, merges = _clip_bpe(300, [bos, eos])
    if int(transformers.__version__.split(".")[0]) >= 5:  # tokenizers-backed, from vocab + merges
        # (annotated list[str], but the tokenizers BPE wants (a, b) tuples)
        tokenizer = CLIPTokenizer(vocab=vocab, merges=cast(Any, merges), model_max_length=77)
    else:  # transformers 4.x: the tokenizer reads vocab.json + merges.txt
        (out / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
        (out / "merges.txt").write_text(
            "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8"
        )
        tokenizer = CLIPTokenizer(vocab_file=str(out / "vocab.json"), merges_file=str(out / "merges.txt"),
                                  model_max_length=77)

    image_processor = _image_processor(transformers, "CLIP", size={"shortest_edge": _IMAGE},
                                       crop_size={"height": _IMAGE, "width": _IMAGE})
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab), "hidden_size": _HIDDEN, "intermediate_size": _INTERMEDIATE,
            "num_hidden_layers": _LAYERS, "num_attention_heads": _HEADS, "max_position_embeddings": 77,
            "bos_token_id": vocab[bos], "eos_token_id": vocab[eos], "pad_token_id": vocab[eos],
        },
        vision_config={
            "hidden_size": _HIDDEN, "intermediate_size": _INTERMEDIATE, "num_hidden_layers": _LAYERS,
            "num_attention_heads": _HEADS, "image_size": _IMAGE, "patch_size": _PATCH,
        },
        projection_dim=projection_dim,
    )
    torch = _seed(seed)
    model = CLIPModel(config).eval()
    with torch.no_grad():
        model.logit_scale.fill_(4.6052)  # ln(100), as trained CLIP models end up
    with _quiet(transformers):
        model.save_pretrained(out)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)
    return str(out)


def build_tiny_siglip(path: str | os.PathLike[str], *, seed: int = 0) -> str:
    """Save a tiny random SigLIP (model, tokenizer, image processor) to ``path``; returns it.

    Hidden size 64 (the embedding size), 2 layers, 224 px images in 32 px patches, texts
    padded to 64 tokens; about 1.5 MB. Load it with ``SiglipEmbedder(path)``.
    """
    transformers = _require_transformers()
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast, SiglipConfig, SiglipModel, SiglipProcessor

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    pad, eos, unk = "<pad>", "</s>", "<unk>"
    tok = _byte_bpe(300, [pad, eos, unk])
    tok.post_processor = processors.TemplateProcessing(
        single=f"$A {eos}", pair=f"$A {eos} $B {eos}", special_tokens=[(eos, tok.token_to_id(eos))]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=pad, eos_token=eos, unk_token=unk, model_max_length=64,
    )
    image_processor = _image_processor(transformers, "Siglip", size={"height": _IMAGE, "width": _IMAGE})
    with _quiet(transformers):  # transformers' default SiglipTextConfig warns about its own ids
        config = SiglipConfig(
            text_config={
                "vocab_size": tok.get_vocab_size(), "hidden_size": _HIDDEN, "intermediate_size": _INTERMEDIATE,
                "num_hidden_layers": _LAYERS, "num_attention_heads": _HEADS, "max_position_embeddings": 64,
                "pad_token_id": tok.token_to_id(pad), "eos_token_id": tok.token_to_id(eos),
                "bos_token_id": tok.token_to_id(eos),  # SigLIP has no BOS; the default id is out of range
            },
            vision_config={
                "hidden_size": _HIDDEN, "intermediate_size": _INTERMEDIATE, "num_hidden_layers": _LAYERS,
                "num_attention_heads": _HEADS, "image_size": _IMAGE, "patch_size": _PATCH,
            },
        )
    _seed(seed)
    model = SiglipModel(config).eval()
    with _quiet(transformers):
        model.save_pretrained(out)
    SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)
    return str(out)


def _image_processor(transformers: Any, prefix: str, **kwargs: Any) -> Any:
    """The Pillow image processor when this transformers has one (the default one may need
    torchvision), else the classic one."""
    cls = getattr(transformers, f"{prefix}ImageProcessorPil", None) or getattr(
        transformers, f"{prefix}ImageProcessor"
    )
    return cls(**kwargs)


@contextlib.contextmanager
def _quiet(transformers: Any) -> Iterator[None]:
    """transformers' warnings and progress bars off for the block (restored after)."""
    logging = transformers.utils.logging
    verbosity = logging.get_verbosity()
    bars = logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()
