"""Image helpers: bytes kept as given, PNG for in-memory images, EXIF, modes, errors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from multimodal_store.errors import DataError, MediaError
from multimodal_store.media import (
    EncodedImage,
    decode_image,
    encode_image,
    image_info,
    load_image,
    thumbnail,
    to_rgb,
)

skdata = pytest.importorskip("skimage.data")

FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif", "BMP": "image/bmp"}


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    """Real photographs shipped with scikit-image (uint8 RGB arrays)."""
    return {"astronaut": skdata.astronaut(), "chelsea": skdata.chelsea(), "coffee": skdata.coffee()}


def _encode(arr: np.ndarray, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _with_orientation(arr: np.ndarray, orientation: int) -> bytes:
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_encoded_bytes_are_kept_exactly(photos: dict[str, np.ndarray], fmt: str, tmp_path: Path) -> None:
    arr = photos["chelsea"]
    data = _encode(arr, fmt)
    enc = encode_image(data)
    assert enc.data == data  # identical bytes: never re-encoded
    assert (enc.mime, enc.width, enc.height) == (FORMATS[fmt], arr.shape[1], arr.shape[0])
    path = tmp_path / f"cat.{fmt.lower()}"
    path.write_bytes(data)
    assert encode_image(path) == enc
    assert encode_image(str(path)).data == data
    assert image_info(data) == (FORMATS[fmt], arr.shape[1], arr.shape[0])


def test_arrays_and_pil_images_become_lossless_png(photos: dict[str, np.ndarray]) -> None:
    for name, arr in photos.items():
        enc = encode_image(arr)
        assert enc.mime == "image/png" and enc.data.startswith(b"\x89PNG")
        assert (enc.width, enc.height) == (arr.shape[1], arr.shape[0]), name
        np.testing.assert_array_equal(np.asarray(decode_image(enc.data)), arr)
        assert encode_image(Image.fromarray(arr)).data == enc.data
    # a PIL image opened from a JPEG is encoded to PNG too (documented)
    jpeg = Image.open(io.BytesIO(_encode(photos["coffee"], "JPEG")))
    assert encode_image(jpeg).mime == "image/png"


def test_array_shapes_and_dtypes() -> None:
    gray = np.arange(12 * 7, dtype=np.uint8).reshape(12, 7)
    assert decode_image(encode_image(gray).data).mode == "L"
    assert (encode_image(gray).width, encode_image(gray).height) == (7, 12)
    np.testing.assert_array_equal(np.asarray(decode_image(encode_image(gray[:, :, None]).data)), gray)
    rgba = np.zeros((5, 6, 4), np.uint8)
    assert decode_image(encode_image(rgba).data).mode == "RGBA"
    deep = (np.arange(20, dtype=np.uint16) * 3000).reshape(4, 5)
    assert decode_image(encode_image(deep).data).mode.startswith("I")
    with pytest.raises(DataError, match="uint8"):
        encode_image(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(DataError, match="shape"):
        encode_image(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(DataError, match="expected a path"):
        encode_image(12345)  # type: ignore[arg-type]


def test_exif_orientation_gives_displayed_size(photos: dict[str, np.ndarray]) -> None:
    arr = photos["astronaut"][:200, :300]  # 300 wide, 200 high as stored
    data = _with_orientation(arr, 6)  # "rotate 90 CW to display": displayed 200 x 300
    enc = encode_image(data)
    assert enc.data == data
    assert (enc.width, enc.height) == (200, 300)
    assert image_info(data)[1:] == (200, 300)
    img = decode_image(data)
    assert img.size == (200, 300)
    assert thumbnail(data, (100, 100)).size == (67, 100)
    # a PIL image carrying the tag is baked upright into the PNG
    png = encode_image(Image.open(io.BytesIO(data)))
    assert (png.width, png.height) == (200, 300)
    assert decode_image(png.data).size == (200, 300)
    np.testing.assert_array_equal(np.asarray(load_image(data)), np.asarray(load_image(png)))


def test_not_an_image_names_source_and_content(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match=r"expected JPEG/PNG/WebP.*got 17 bytes starting with b'hello"):
        encode_image(b"hello, not image!")
    bad = tmp_path / "notes.jpg"
    bad.write_bytes(b"plain text pretending to be a jpeg")
    with pytest.raises(MediaError, match="notes.jpg"):
        encode_image(bad)
    with pytest.raises(MediaError, match="0 bytes"):
        encode_image(b"")
    with pytest.raises(MediaError, match="upload-7"):
        encode_image(b"\x00" * 40, name="upload-7")
    with pytest.raises(MediaError):
        image_info(b"hello")
    with pytest.raises(MediaError):
        decode_image(b"hello")
    with pytest.raises(FileNotFoundError):
        encode_image(tmp_path / "missing.png")
    assert issubclass(MediaError, ValueError)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_and_corrupt_images_raise(photos: dict[str, np.ndarray], fmt: str) -> None:
    data = _encode(photos["coffee"], fmt)
    with pytest.raises(MediaError):
        encode_image(data[: len(data) // 2])
    with pytest.raises(MediaError):
        decode_image(data[: len(data) // 2])
    if fmt == "WEBP":
        return  # Pillow's WebP plugin decodes when opening
    # the header alone still gives the size: image_info does not decode the pixels
    assert image_info(data[: len(data) // 2])[1:] == (photos["coffee"].shape[1], photos["coffee"].shape[0])


def test_corrupt_png_chunk_is_caught(photos: dict[str, np.ndarray]) -> None:
    data = bytearray(_encode(photos["chelsea"], "PNG"))
    data[len(data) // 2] ^= 0xFF  # CRC mismatch / zlib error in an IDAT chunk
    with pytest.raises(MediaError, match="corrupt"):
        encode_image(bytes(data))


def test_to_rgb_modes() -> None:
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red
    assert to_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)
    half = Image.new("RGBA", (4, 4), (0, 0, 0, 128))
    assert to_rgb(half).getpixel((0, 0)) == (127, 127, 127)
    assert to_rgb(Image.new("LA", (2, 2), (0, 0))).getpixel((0, 0)) == (255, 255, 255)
    pal = Image.new("P", (2, 2), 1)
    pal.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    pal.info["transparency"] = 1
    assert to_rgb(pal).getpixel((0, 0)) == (255, 255, 255)
    pal.info.pop("transparency")
    assert to_rgb(pal).getpixel((0, 0)) == (10, 20, 30)
    cmyk = Image.new("CMYK", (2, 2), (0, 255, 255, 0))
    assert to_rgb(cmyk).getpixel((0, 0)) == (255, 0, 0)
    assert to_rgb(Image.new("L", (2, 2), 77)).getpixel((1, 1)) == (77, 77, 77)
    deep = Image.fromarray(np.full((2, 2), 65535, np.uint16))
    assert to_rgb(deep).getpixel((0, 0)) == (255, 255, 255)
    mid = Image.fromarray(np.full((2, 2), 32768, np.uint16))
    assert to_rgb(mid).getpixel((0, 0))[0] in (127, 128)
    floats = Image.fromarray(np.full((2, 2), 0.5, np.float32))
    assert to_rgb(floats).getpixel((0, 0))[0] in (127, 128)
    rgb = Image.new("RGB", (2, 2))
    assert to_rgb(rgb) is rgb


def test_thumbnail_and_load_image(photos: dict[str, np.ndarray]) -> None:
    arr = photos["astronaut"]  # 512 x 512
    jpeg = _encode(arr, "JPEG", quality=90)
    t = thumbnail(jpeg, (128, 64))
    assert t.mode == "RGB" and t.size == (64, 64)
    assert thumbnail(EncodedImage(jpeg, "image/jpeg", 512, 512)).size == (256, 256)
    small = Image.fromarray(arr[:50, :80])
    assert thumbnail(small).size == (80, 50)  # never enlarged
    assert small.size == (80, 50)  # input untouched
    rgba = np.zeros((10, 10, 4), np.uint8)
    assert load_image(rgba).getpixel((0, 0)) == (255, 255, 255)
    for value in (arr, Image.fromarray(arr), encode_image(arr), encode_image(arr).data):
        img = load_image(value)
        assert img.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(img), arr)


def test_encoded_image_passthrough_and_repr(photos: dict[str, np.ndarray]) -> None:
    enc = encode_image(photos["coffee"])
    assert encode_image(enc) is enc
    assert "bytes" in repr(enc) and len(repr(enc)) < 120
    assert np.asarray(enc.decode()).shape == photos["coffee"].shape
