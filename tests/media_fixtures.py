"""Synthetic media for the media tests and the media benchmark (generated with PyAV).

Videos are made of *shots*: a solid background colour (with a small moving square, so the
frames inside a shot are not identical) that changes at known times, so a test knows where
the shot boundaries are. ``texture=True`` adds a panning noise texture (more realistic
bitrates for the benchmark).
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

#: A few clearly different colours for consecutive shots.
COLOURS: list[tuple[int, int, int]] = [
    (220, 30, 30), (30, 200, 40), (40, 60, 220), (240, 220, 40), (200, 40, 200), (30, 200, 210),
    (250, 250, 250), (20, 20, 20),
]

#: encoder -> (container format, encoder options)
CODECS: dict[str, tuple[str, dict[str, str]]] = {
    "libx264": ("mp4", {"preset": "ultrafast", "tune": "zerolatency"}),
    "mpeg4": ("mp4", {}),
    "libvpx-vp9": ("webm", {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}),
    "libsvtav1": ("mp4", {"preset": "8"}),  # presets >= 10 mis-encode tiny frames
    "mjpeg": ("avi", {}),  # intra-only: every packet is a key frame
}


def has_encoder(name: str) -> bool:
    import av

    try:
        av.codec.Codec(name, "w")
    except Exception:
        return False
    return True


def shot_times(durations: Sequence[float]) -> list[tuple[float, float]]:
    """[(start, end)] of consecutive shots with the given durations."""
    out, t = [], 0.0
    for d in durations:
        out.append((t, t + d))
        t += d
    return out


def _frame_array(t: float, shots: Sequence[tuple[float, float]], w: int, h: int,
                 texture: np.ndarray | None, rng_phase: float = 0.0) -> np.ndarray:
    k = 0
    for i, (s, _e) in enumerate(shots):
        if t >= s - 1e-9:
            k = i
    colour = np.array(COLOURS[k % len(COLOURS)], np.uint8)
    if texture is not None:
        # a per-shot texture panning right at 40 px/s, tinted with the shot colour
        off = (k * 37) % (texture.shape[0] - h + 1)
        shift = int(t * 40 + rng_phase) % texture.shape[1]
        tex = np.roll(texture[off:off + h], shift, axis=1)[:, :w]
        img = (tex[:, :, None].astype(np.uint16) * colour[None, None, :] // 255).astype(np.uint8)
    else:
        img = np.empty((h, w, 3), np.uint8)
        img[:] = colour
    # a small white square moving left to right: motion inside the shot
    side = max(4, h // 8)
    x = int((t * 0.3 % 1.0) * max(1, w - side))
    y = h // 2 - side // 2
    img[y:y + side, x:x + side] = 255
    return img


def _texture(w: int, h: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(60, 255, size=(h // 8 + 40, w // 8 + 2), dtype=np.uint8)
    big = np.kron(small, np.ones((8, 8), np.uint8))
    noise = rng.integers(0, 24, size=big.shape, dtype=np.uint8)
    return np.clip(big.astype(np.int16) - noise, 0, 255).astype(np.uint8)


def make_video(
    path: str | Path | None = None,
    *,
    durations: Sequence[float] = (2.0, 3.0, 2.0),
    codec: str = "libx264",
    size: tuple[int, int] = (160, 96),
    fps: int = 25,
    gop: int | None = None,
    rotation: float | None = None,
    times: Sequence[float] | None = None,
    texture: bool = False,
    audio: bool = False,
    top_band: bool = False,
    options: dict[str, str] | None = None,
    fmt: str | None = None,
) -> bytes:
    """Encode a synthetic video; returns its bytes (and writes them to ``path`` if given).

    ``durations``: shot lengths in seconds (shot i has colour ``COLOURS[i]``). ``gop``: frames
    between key frames (``None``: the encoder's default; scene-cut detection is turned off for
    libx264 when ``gop`` is given). ``rotation``: counter-clockwise display rotation stored
    in the display matrix. ``times``: explicit frame timestamps in seconds (variable frame
    rate; stored with a 1/1000 time base). ``audio``: add a 440 Hz AAC track. ``top_band``: paint
    the top sixth of every frame black (to check orientation).
    """
    import av

    fmt_default, opts = CODECS.get(codec, ("mp4", {}))
    fmt = fmt or fmt_default
    opts = {**opts, **(options or {})}
    w, h = size
    shots = shot_times(durations)
    total = shots[-1][1]
    if times is None:
        times = [i / fps for i in range(round(total * fps))]
    tex = _texture(w, h) if texture else None

    buf = io.BytesIO()
    out = av.open(buf, "w", format=fmt)
    stream: Any = out.add_stream(codec, rate=fps)
    stream.width, stream.height = w, h
    stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
    vfr = times is not None and any(abs(b - a - 1 / fps) > 1e-6 for a, b in itertools.pairwise(times))
    if vfr:
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.time_base = Fraction(1, 1000)
    if gop is not None:
        stream.codec_context.gop_size = gop
        if codec == "libx264":
            opts["x264-params"] = f"keyint={gop}:min-keyint={gop}:scenecut=0"
        elif codec == "libsvtav1":
            opts["svtav1-params"] = f"keyint={gop}:scd=0"
    stream.options = opts
    if rotation is not None:
        stream.set_display_rotation(rotation)
    astream: Any = None
    if audio:
        astream = out.add_stream("aac", rate=44100)
        astream.layout = "mono"

    for t in times:
        arr = _frame_array(t, shots, w, h, tex)
        if top_band:
            arr[: h // 6] = 0
        frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
        frame.pts = round(t * 1000) if vfr else round(t * fps)
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    if astream is not None:
        _encode_tone(av, out, astream, total, 440.0, 44100, 1)
    out.close()
    data = buf.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data


def _encode_tone(av: Any, out: Any, stream: Any, duration: float, freq: float, sr: int, channels: int) -> None:
    n = round(duration * sr)
    t = np.arange(n) / sr
    tone = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    frame_size = stream.codec_context.frame_size or 1024
    pts = 0
    for start in range(0, n, frame_size):
        chunk = tone[start:start + frame_size]
        planar = np.repeat(chunk[None, :], channels, axis=0)
        # PyAV converts to the encoder's sample format and frame size
        frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=stream.layout.name)
        frame.sample_rate = sr
        frame.pts = pts
        pts += chunk.shape[0]
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)


def make_audio(path: str | Path | None = None, *, duration: float = 1.0, freq: float = 440.0,
               sr: int = 44100, channels: int = 2, codec: str = "aac", fmt: str | None = None) -> bytes:
    """Encode a sine tone (amplitude 0.5); returns the bytes (and writes ``path`` if given)."""
    import av

    fmt = fmt or {"aac": "mp4", "pcm_s16le": "wav", "libopus": "ogg", "flac": "flac", "mp3": "mp3"}[codec]
    buf = io.BytesIO()
    out = av.open(buf, "w", format=fmt)
    stream: Any = out.add_stream(codec, rate=sr)
    stream.layout = "stereo" if channels == 2 else "mono"
    _encode_tone(av, out, stream, duration, freq, sr, channels)
    out.close()
    data = buf.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data


def truncate(data: bytes, fraction: float = 0.5) -> bytes:
    """The first ``fraction`` of the bytes (an MP4 cut this way has no ``moov`` atom)."""
    return data[: int(len(data) * fraction)]


def flip_bytes(data: bytes, n: int = 200, seed: int = 0, start: float = 0.2, stop: float = 0.9) -> bytes:
    """Flip ``n`` random bytes between ``start`` and ``stop`` (fractions of the length)."""
    rng = np.random.default_rng(seed)
    arr = bytearray(data)
    lo, hi = int(len(arr) * start), max(int(len(arr) * start) + 1, int(len(arr) * stop))
    for pos in rng.integers(lo, hi, size=n):
        arr[int(pos)] ^= 0xFF
    return bytes(arr)
