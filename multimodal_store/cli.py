"""The ``mmstore`` command: ingest folders, run SQL, search by text, inspect, and a demo.

    mmstore ingest ./media --db ./data/kb [--model PATH_OR_NAME] [--text-model PATH_OR_NAME]
    mmstore query ./data/kb "SELECT text FROM kb WHERE content_type = 'image' LIMIT 5"
    mmstore search ./data/kb "a red car" --k 5 --save-images ./out --model PATH_OR_NAME
    mmstore info ./data/kb
    mmstore demo

Exit codes: 0 success, 1 a user error (bad SQL, missing dataset...), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import MultimodalStoreError

__all__ = ["main"]


def _param(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"parameters look like name=value, got {text!r}")
    name, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return name, value


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _cmd_info(args: argparse.Namespace) -> int:
    import multimodal_store as mms

    ds = mms.open_read_only(args.path)
    size = sum(p.stat().st_size for p in Path(args.path).rglob("*") if p.is_file()) if Path(args.path).exists() else 0
    _out(f"dataset  {ds.url}")
    _out(f"version  {ds.version}   rows {len(ds)}   size on disk {size / 2**20:.1f} MiB")
    _out("columns")
    for name, ctype in ds.schema.items():
        _out(f"  {name:<20} {ctype!r}")
    _out("versions")
    for h in ds.history:
        _out(f"  {h.version:>4}  {h.num_rows:>8} rows  {h.operation:<24} {h.message or ''}")
    tags = ds.tags
    if tags:
        _out("tags     " + ", ".join(f"{k}={v}" for k, v in tags.items()))
    return 0


def _cmd_query(args: argparse.Namespace) -> int:
    import multimodal_store as mms

    ds = mms.open_read_only(args.path)
    res = ds.query(args.sql, dict(args.param or []))
    _out(repr(res))
    return 0


def _embedder(model: str | None) -> Any:
    from .embeddings import CLIPEmbedder, SiglipEmbedder

    if model is None:
        raise MultimodalStoreError("--model is required: a CLIP or SigLIP model name or local folder")
    if "siglip" in model.lower():
        return SiglipEmbedder(model)
    return CLIPEmbedder(model)


def _cmd_search(args: argparse.Namespace) -> int:
    import multimodal_store as mms

    ds = mms.open_read_only(args.path)
    emb = _embedder(args.model)
    res = ds.query(
        "SELECT content_type, text, source, timestamp, image, video_frame FROM kb "
        "ORDER BY cosine_similarity(clip_embedding, :q) LIMIT :k",
        {"q": emb.encode_text([args.text])[0], "k": args.k},
    )
    _out(repr(res))
    if args.save_images:
        out = Path(args.save_images)
        out.mkdir(parents=True, exist_ok=True)
        for i, row in enumerate(res):
            img = row.get("image") or row.get("video_frame")
            if img is not None:
                img.convert("RGB").save(out / f"{i:02d}.jpg")
        _out(f"saved images to {out}")
    return 0


def _cmd_ingest(args: argparse.Namespace) -> int:
    import multimodal_store as mms

    ds = mms.open(args.db)
    image_embedder = _embedder(args.model) if args.model else None
    text_embedder = None
    if args.text_model:
        from .embeddings import TextEmbedder

        text_embedder = TextEmbedder(args.text_model)
    report = ds.ingest(args.folder, image_embedder=image_embedder, text_embedder=text_embedder,
                       frame_mode=args.frame_mode, on_error="skip", progress=not args.quiet)
    _out(str(report))
    return 1 if report.errors and not report.files_ingested else 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    workdir = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="mmstore-demo-"))
    run_demo(workdir, out=_out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmstore", description="multimodal-store: media, embeddings and metadata "
                                "in one versioned table, queried with SQL.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("ingest", help="ingest a folder of images, videos, audio and text files")
    s.add_argument("folder")
    s.add_argument("--db", required=True, help="dataset path (created if missing)")
    s.add_argument("--model", help="CLIP / SigLIP model name or local folder for image embeddings")
    s.add_argument("--text-model", help="text embedding model name or local folder")
    s.add_argument("--frame-mode", default="scene", choices=["scene", "keyframes", "uniform"])
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_ingest)

    s = sub.add_parser("query", help="run a SQL query")
    s.add_argument("path")
    s.add_argument("sql")
    s.add_argument("--param", action="append", type=_param, metavar="NAME=VALUE",
                   help="bind a parameter (JSON value: numbers, lists, strings)")
    s.set_defaults(func=_cmd_query)

    s = sub.add_parser("search", help="text -> image / frame search through a CLIP-style model")
    s.add_argument("path")
    s.add_argument("text")
    s.add_argument("--k", type=int, default=5)
    s.add_argument("--model", required=True, help="the CLIP / SigLIP model used at ingestion")
    s.add_argument("--save-images", metavar="DIR", help="write the result images to DIR")
    s.set_defaults(func=_cmd_search)

    s = sub.add_parser("info", help="schema, rows, versions and size of a dataset")
    s.add_argument("path")
    s.set_defaults(func=_cmd_info)

    s = sub.add_parser("demo", help="build a small dataset from generated media and run the seed's queries")
    s.add_argument("--dir", help="where to build it (default: a new temporary folder)")
    s.set_defaults(func=_cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mmstore`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return int(args.func(args))
    except (MultimodalStoreError, FileNotFoundError, ImportError) as exc:
        sys.stderr.write(f"mmstore {args.command}: error: {exc}\n")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
