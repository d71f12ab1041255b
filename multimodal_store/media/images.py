"""Image helpers: validate and keep encoded image bytes, decode them for display and models.

The store keeps images as their *encoded* bytes. Files and bytes that are already JPEG, PNG,
WebP, GIF or BMP are stored exactly as given (never re-encoded, so no generation loss and the
same hash as the original file); other formats that Pillow can read (TIFF, ICO, ...) and
in-memory images (PIL images, numpy arrays) are encoded to PNG, which is lossless. A PIL image
that was opened from a JPEG or WebP file is also encoded to PNG: pass the file's path or bytes
instead to keep the original encoding.

Widths and heights are always the *displayed* size, after the EXIF orientation is applied.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from multimodal_store.errors import DataError, MediaError

__all__ = [
    "KEPT_FORMATS",
    "EncodedImage",
    "ImageLike",
    "decode_image",
    "encode_image",
    "image_info",
    "load_image",
    "thumbnail",
    "to_rgb",
]

#: Pillow format name -> MIME type of the formats whose bytes are stored as given.
KEPT_FORMATS: dict[str, str] = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
}

_ORIENTATION_TAG = 0x0112
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})  # orientations that rotate by 90 or 270 degrees
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_PNG_MODES = frozenset({"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"})


@dataclass(frozen=True)
class EncodedImage:
    """Encoded image bytes ready to store, with their MIME type and displayed size."""

    data: bytes
    mime: str
    width: int
    height: int

    def __repr__(self) -> str:  # the default repr would print all the bytes
        return f"EncodedImage(mime={self.mime!r}, width={self.width}, height={self.height}, {len(self.data)} bytes)"

    def decode(self) -> Image.Image:
        """The decoded image (EXIF orientation applied)."""
        return decode_image(self.data)


#: Everything :func:`encode_image` and :func:`load_image` accept.
ImageLike: TypeAlias = (
    str | os.PathLike[str] | bytes | bytearray | memoryview | Image.Image | np.ndarray | EncodedImage
)


# --------------------------------------------------------------------------------------------- helpers


def _describe_bytes(data: bytes) -> str:
    return f"{len(data)} bytes starting with {bytes(data[:16])!r}"


def _not_an_image(source: str, data: bytes, detail: str | None = None) -> MediaError:
    msg = f"{source}: expected JPEG/PNG/WebP/GIF/BMP image bytes, got {_describe_bytes(data)}"
    if detail:
        msg += f" ({detail})"
    return MediaError(msg)


def _read_path(path: str | os.PathLike[str]) -> bytes:
    p = Path(path)
    if p.is_dir():
        raise MediaError(f"{p}: is a directory, expected an image file")
    return p.read_bytes()  # FileNotFoundError for a missing file, like open()


def _open(data: bytes, source: str) -> Image.Image:
    """Open (lazily, header only) image bytes; MediaError when Pillow does not know them."""
    if not data:
        raise MediaError(f"{source}: expected JPEG/PNG/WebP/GIF/BMP image bytes, got 0 bytes")
    try:
        return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise _not_an_image(source, data) from None
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow raises SyntaxError for some bad headers
        raise _not_an_image(source, data, str(exc)) from None
    except Image.DecompressionBombError as exc:
        raise MediaError(f"{source}: {exc}") from None


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(_ORIENTATION_TAG, 1) or 1)
    except Exception:  # a broken EXIF block must not make the image unreadable
        return 1


def _displayed_size(img: Image.Image) -> tuple[int, int]:
    w, h = img.size
    if _orientation(img) in _SWAPPING_ORIENTATIONS:
        return h, w
    return w, h


def _check_decodes(data: bytes, source: str) -> Image.Image:
    """``verify()`` the bytes, then decode them fully (catches truncated files). Returns the
    lazily opened image (header parsed, pixels not kept)."""
    img = _open(data, source)
    try:
        img.verify()
        full = Image.open(io.BytesIO(data))
        full.load()
    except Image.DecompressionBombError as exc:
        raise MediaError(f"{source}: {exc}") from None
    except Exception as exc:
        raise MediaError(
            f"{source}: corrupt or truncated {img.format or 'image'} data "
            f"({_describe_bytes(data)}): {exc}"
        ) from None
    return full


def _array_to_pil(arr: np.ndarray, source: str = "array") -> Image.Image:
    a = np.asarray(arr)
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.dtype == np.uint16 and a.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(a))  # mode I;16
    if a.dtype != np.uint8:
        raise DataError(
            f"{source}: expected a uint8 image array, got dtype {a.dtype}; convert it first, "
            "e.g. (arr * 255).clip(0, 255).astype(np.uint8) for floats in [0, 1]"
        )
    if a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4)):
        return Image.fromarray(np.ascontiguousarray(a))  # L, RGB or RGBA
    raise DataError(f"{source}: expected an HxW, HxWx3 or HxWx4 image array, got shape {a.shape}")


def _encode_png(img: Image.Image) -> bytes:
    img = ImageOps.exif_transpose(img)  # PNG output carries no EXIF: bake the orientation in
    if img.mode not in _PNG_MODES:
        img = to_rgb(img)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------------------------- public


def encode_image(value: ImageLike, *, name: str | None = None) -> EncodedImage:
    """Validate an image and return its encoded bytes, MIME type and displayed size.

    ``value`` is a path, encoded bytes, a PIL image, an ``HxW``/``HxWxC`` uint8 numpy array
    (C = 1, 3 or 4) or an :class:`EncodedImage` (returned unchanged). JPEG/PNG/WebP/GIF/BMP
    bytes are kept exactly as given; other readable formats, PIL images and arrays are encoded
    to PNG. ``name`` names the value in error messages (a path names itself).

    Raises :class:`~multimodal_store.errors.MediaError` for bytes that are not an image or are
    corrupt or truncated (the whole image is decoded once to check).
    """
    if isinstance(value, EncodedImage):
        return value
    if isinstance(value, (str, os.PathLike)):
        source = name or os.fspath(value)
        data = _read_path(value)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        source = name or "image bytes"
        data = bytes(value)
    elif isinstance(value, Image.Image):
        png = _encode_png(value)
        w, h = Image.open(io.BytesIO(png)).size
        return EncodedImage(png, "image/png", w, h)
    elif isinstance(value, np.ndarray):
        img = _array_to_pil(value, name or "array")
        png = _encode_png(img)
        return EncodedImage(png, "image/png", img.width, img.height)
    else:
        raise DataError(
            f"{name or 'image'}: expected a path, bytes, PIL image or uint8 numpy array, "
            f"got {type(value).__name__}"
        )

    full = _check_decodes(data, source)
    fmt = full.format or ""
    if fmt in KEPT_FORMATS:
        w, h = _displayed_size(full)
        return EncodedImage(data, KEPT_FORMATS[fmt], w, h)
    png = _encode_png(full)
    w, h = Image.open(io.BytesIO(png)).size
    return EncodedImage(png, "image/png", w, h)


def image_info(data: bytes, *, name: str | None = None) -> tuple[str, int, int]:
    """``(mime, width, height)`` of encoded image bytes, reading the header only.

    The size is the displayed size (after EXIF orientation). Formats outside
    :data:`KEPT_FORMATS` report their Pillow MIME type (``image/tiff``...) or
    ``application/octet-stream``. Raises :class:`MediaError` for bytes Pillow does not know.
    """
    data = bytes(data)
    img = _open(data, name or "image bytes")
    fmt = img.format or ""
    mime = KEPT_FORMATS.get(fmt) or Image.MIME.get(fmt) or "application/octet-stream"
    w, h = _displayed_size(img)
    return mime, w, h


def decode_image(data: bytes | bytearray | memoryview | str | os.PathLike[str], *,
                 name: str | None = None) -> Image.Image:
    """Decode image bytes (or a file) to a PIL image with its EXIF orientation applied.

    The mode is left as decoded (use :func:`to_rgb` for models). Animated images give their
    first frame. Raises :class:`MediaError` for bytes that cannot be decoded.
    """
    return _decode(data, name, None)


def _decode(data: bytes | bytearray | memoryview | str | os.PathLike[str], name: str | None,
            min_side: int | None) -> Image.Image:
    if isinstance(data, (str, os.PathLike)):
        source = name or os.fspath(data)
        raw = _read_path(data)
    else:
        source = name or "image bytes"
        raw = bytes(data)
    img = _open(raw, source)
    try:
        if min_side and img.format == "JPEG":
            w, h = img.size
            scale = min_side / max(1, min(w, h))
            if scale < 0.5:  # let libjpeg decode at 1/2, 1/4 or 1/8 scale (much faster)
                img.draft(img.mode if img.mode in ("L", "RGB") else "RGB",
                          (math.ceil(w * scale), math.ceil(h * scale)))
        img.load()
        return ImageOps.exif_transpose(img)
    except Exception as exc:
        raise MediaError(
            f"{source}: corrupt or truncated {img.format or 'image'} data ({_describe_bytes(raw)}): {exc}"
        ) from None


def _shrink(img: Image.Image, min_side: int | None) -> Image.Image:
    """Box-reduce by an integer factor while the shorter side stays >= ``min_side``."""
    if not min_side:
        return img
    factor = min(img.size) // min_side
    return img.reduce(factor) if factor >= 2 else img


def to_rgb(img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB.

    Transparent images (RGBA, LA, P/L/RGB with a transparency key...) are composited on
    ``background`` (white); 16-bit and 32-bit integer images are scaled to 8 bits instead of
    being clipped; float images in [0, 1] are scaled by 255; CMYK, YCbCr, L, 1... go through
    Pillow's conversion. Returns the same object when it already is RGB without transparency.
    """
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return img
    if mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(base, rgba).convert("RGB")
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if mode == "F" and arr.size and float(np.nanmax(arr)) <= 1.0 and float(np.nanmin(arr)) >= 0.0:
            arr = arr * 255.0
        elif mode.startswith("I;16") or (arr.size and float(arr.max()) > 255.0):
            hi = 65535.0 if mode.startswith("I;16") or float(arr.max()) <= 65535.0 else float(arr.max())
            arr = arr * (255.0 / hi)
        gray = np.nan_to_num(arr).clip(0, 255).round().astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    return img.convert("RGB")


def load_image(value: ImageLike, *, name: str | None = None, min_side: int | None = None) -> Image.Image:
    """Any :data:`ImageLike` as an upright 8-bit RGB PIL image (what models take).

    Paths and bytes are decoded with their EXIF orientation applied; PIL images get their EXIF
    orientation applied too (a no-op for images that are already upright); arrays are read as
    RGB (HxWx3), RGBA (composited on white) or grey (HxW).

    ``min_side`` is a speed hint for models that resize anyway: large images may come back
    reduced (JPEG decoded at 1/2-1/8 scale, others box-reduced by an integer factor) as long
    as their shorter side stays at least ``min_side`` pixels.
    """
    if isinstance(value, EncodedImage):
        value = value.data
    if isinstance(value, (str, os.PathLike, bytes, bytearray, memoryview)):
        img = _decode(value, name, min_side)
    elif isinstance(value, Image.Image):
        img = ImageOps.exif_transpose(value)
    elif isinstance(value, np.ndarray):
        img = _array_to_pil(value, name or "array")
    else:
        raise DataError(
            f"{name or 'image'}: expected a path, bytes, PIL image or uint8 numpy array, got {type(value).__name__}"
        )
    return _shrink(to_rgb(img), min_side)


def thumbnail(value: ImageLike, size: tuple[int, int] = (256, 256)) -> Image.Image:
    """An RGB copy of the image that fits in ``size`` (aspect ratio kept, never enlarged).

    JPEG bytes are decoded at a reduced scale (Pillow's ``draft``), which is much faster for
    large photos. The input image is not modified.
    """
    if isinstance(value, EncodedImage):
        value = value.data
    if isinstance(value, (str, os.PathLike, bytes, bytearray, memoryview)):
        source = os.fspath(value) if isinstance(value, (str, os.PathLike)) else "image bytes"
        raw = _read_path(value) if isinstance(value, (str, os.PathLike)) else bytes(value)
        img = _open(raw, source)
        try:
            if img.format == "JPEG":
                side = max(size)
                img.draft("RGB", (side, side))
            img.load()
            img = ImageOps.exif_transpose(img)
        except Exception as exc:
            raise MediaError(f"{source}: corrupt or truncated {img.format or 'image'} data: {exc}") from None
    else:
        img = load_image(value)
    out = to_rgb(img)
    if out is img:
        out = img.copy()
    out.thumbnail(size, Image.Resampling.LANCZOS)
    return out
