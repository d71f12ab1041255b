"""Frames from video files, for embedding: scene changes, key frames or a uniform sampling.

Decoding uses PyAV (``pip install 'multimodal-store[video]'``), imported on first use.

Three modes pick the frames of :func:`extract_frames`:

``"scene"`` (default)
    Every frame is decoded, but only ``1 / every`` frames per second (4 by default) are
    looked at: each is shrunk to 32x32 and compared with the last *emitted* frame; the frame
    is emitted when the mean absolute RGB difference (0-255) exceeds ``threshold`` and at
    least ``min_gap`` seconds passed, or when ``max_gap`` seconds passed without a frame (so a
    long shot still gets a frame every ``max_gap`` seconds). The first frame is always emitted.
``"keyframes"``
    The encoder's key frames (packets flagged as key frames; no other packet is decoded),
    at least ``min_gap`` apart, plus evenly spaced frames wherever key frames are more than
    ``max_gap`` apart: encoders with long GOPs (or no scene-cut detection) would otherwise
    miss whole scenes. The file is read twice: once without decoding to find the key frames,
    once to decode them and, in long gaps, the frames from the previous key frame to the
    wanted time.
``"uniform"``
    The first frame at or after each multiple of ``every`` seconds (1.0 by default); only the
    groups of pictures that hold a wanted frame are decoded, so sparse sampling is fast.

Timestamps are ``(pts - start_time) x time_base`` of the video stream (the presentation
time, equal to ``pts x time_base`` for files whose stream starts at 0 as MP4 and WebM
usually do), never ``index / fps``, so variable frame rate video gets correct times. Frames
are yielded in time order. Rotation metadata (the display matrix, or the legacy ``rotate``
tag) is applied so images display upright; non-square pixels are resized to the display
aspect ratio.

A corrupt packet is skipped and decoding goes on; a file that is not a video, has no video
stream or yields no decodable frame raises :class:`~multimodal_store.errors.MediaError`
naming the file.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import heapq
import io
import itertools
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, BinaryIO, Literal, TypeAlias

import numpy as np
from PIL import Image

from multimodal_store.errors import MediaError

__all__ = ["MODES", "Frame", "VideoSource", "extract_frames", "format_timestamp", "video_info"]

#: A path, the encoded bytes, or a binary file object open for reading.
VideoSource: TypeAlias = "str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO"
Mode = Literal["scene", "keyframes", "uniform"]
MODES: tuple[str, ...] = ("scene", "keyframes", "uniform")

_SCENE_EVERY = 0.25  # seconds between the frames compared in scene mode (4 per second)
_UNIFORM_EVERY = 1.0
_SMALL = 32  # side of the thumbnails compared in scene mode
_REORDER = 16  # frames held back to put out-of-order frames back in time order


@dataclass(order=False)
class Frame:
    """One extracted frame: an upright RGB image and its presentation time in seconds."""

    image: Image.Image
    timestamp: float
    index: int  # the frame's number in presentation order (0-based)
    source: str | None = None

    def __repr__(self) -> str:
        return (f"Frame(timestamp={self.timestamp:.3f}, index={self.index}, "
                f"size={self.image.size}, source={self.source!r})")


def format_timestamp(seconds: float) -> str:
    """A frame time for captions: ``"MM:SS"``, or ``"H:MM:SS"`` from one hour on (seconds truncated)."""
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


@dataclass(order=True)
class _Pending:
    key: tuple[float, int]
    frame: Frame = field(compare=False)


def _import_av() -> Any:
    try:
        import av
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "video decoding needs PyAV; install it with: pip install 'multimodal-store[video]'"
        ) from exc
    return av


# --------------------------------------------------------------------------------------------- opening


def _source_name(source: Any, kind: str) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes of {kind}>"
    name = getattr(source, "name", None)
    return str(name) if isinstance(name, (str, os.PathLike)) else f"<{type(source).__name__}>"


class _Reader:
    """Opens (and re-opens) a source as PyAV containers, turning failures into MediaError."""

    def __init__(self, source: Any, kind: str = "video") -> None:
        self.av = _import_av()
        self.kind = kind
        self.name = _source_name(source, kind)
        self._path: str | None = None
        self._data: bytes | None = None
        self._file: BinaryIO | None = None
        self._file_pos = 0
        if isinstance(source, (str, os.PathLike)):
            self._path = os.fspath(source)
            if not os.path.exists(self._path):
                raise FileNotFoundError(f"no such {kind} file: {self._path}")
            if os.path.isdir(self._path):
                raise MediaError(f"{self._path}: is a directory, expected a {kind} file")
        elif isinstance(source, (bytes, bytearray, memoryview)):
            self._data = bytes(source)
            if not self._data:
                raise MediaError(f"{kind} bytes: got 0 bytes")
        elif hasattr(source, "read"):
            self._file = source
            try:
                self._file_pos = source.tell() if source.seekable() else -1
            except (AttributeError, OSError, ValueError):
                self._file_pos = -1
        else:
            raise TypeError(f"expected a path, bytes or a binary file object, got {type(source).__name__}")
        self._opened_once = False

    @property
    def reopenable(self) -> bool:
        return self._file is None or self._file_pos >= 0

    def open(self) -> Any:
        av = self.av
        if self._file is not None:
            if self._opened_once:
                if self._file_pos < 0:
                    raise MediaError(f"{self.name}: the file object cannot be read twice (not seekable)")
                self._file.seek(self._file_pos)
            target: Any = self._file
        elif self._data is not None:
            target = io.BytesIO(self._data)
        else:
            target = self._path
        self._opened_once = True
        try:
            return av.open(target, "r")
        except FileNotFoundError:
            raise
        except (av.error.FFmpegError, OSError, ValueError, EOFError) as exc:
            raise MediaError(f"{self.name}: not a readable {self.kind} file ({exc})") from None

    def video_stream(self, container: Any) -> Any:
        streams = container.streams
        if not streams.video:
            audio = len(streams.audio)
            found = f"{audio} audio stream(s)" if audio else "no audio or video stream"
            container.close()
            raise MediaError(f"{self.name}: no video stream to take frames from (found {found})")
        return streams.video[0]


# --------------------------------------------------------------------------------------------- decoding


def _configure(stream: Any, threads: int | None) -> None:
    cc = stream.codec_context
    try:
        stream.thread_type = "AUTO"
        if threads is not None:
            cc.thread_count = max(0, int(threads))
    except Exception:  # pragma: no cover - some decoders refuse threading options
        pass


def _packets(av: Any, container: Any, stream: Any) -> Iterator[Any]:
    """The demuxed packets of ``stream``; a demuxing error (truncated or corrupt container)
    ends them early, as the end of the file would."""
    demux = container.demux(stream)
    while True:
        try:
            packet = next(demux)
        except (StopIteration, av.error.FFmpegError, OSError, ValueError, EOFError):
            return
        yield packet


def _decode(av: Any, container: Any, stream: Any, want: Any = None,
            seen: list[int] | None = None) -> Iterator[Any]:
    """Decoded frames of ``stream``, packet by packet; corrupt packets are skipped.

    ``want(packet) -> bool`` picks the packets to decode (all when None). ``seen`` (a list)
    collects the sorted pts of the demuxed packets, to number frames even when the decoder
    skips some. A demuxing error ends the stream early (what was decoded is kept); the
    decoder is always flushed.
    """
    flushed = False
    for packet in _packets(av, container, stream):  # a corrupt container ends it: keep what was decoded
        if packet.size == 0 and packet.pts is None:
            flushed = True  # PyAV's end-of-stream packet: decoding it drains the decoder
        else:
            if seen is not None and packet.pts is not None:
                bisect.insort(seen, packet.pts)
            if want is not None and not want(packet):
                continue
        try:
            frames = packet.decode()
        except (av.error.FFmpegError, ValueError):
            continue  # one corrupt packet: skip it and go on
        yield from frames
    if not flushed:
        with contextlib.suppress(av.error.FFmpegError, ValueError):
            yield from stream.codec_context.decode(None)


def _rotation(frame: Any, stream: Any) -> int:
    """Counter-clockwise degrees, in (-180, 180], to rotate the decoded picture so it
    displays upright: the frame's display matrix, else the stream's legacy ``rotate`` tag."""
    rot = getattr(frame, "rotation", 0) or 0
    if not rot:
        tag = stream.metadata.get("rotate") if stream.metadata else None
        if tag:  # legacy MOV/MP4 tag: clockwise degrees
            try:
                rot = -float(tag)
            except ValueError:
                rot = 0
    deg = round(rot) % 360
    return deg - 360 if deg > 180 else deg


def _fit(width: int, height: int, size: int | tuple[int, int] | None) -> tuple[int, int]:
    """(w, h) of ``width x height`` shrunk to fit ``size`` (max side or box); never enlarged."""
    if size is None:
        return width, height
    box = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    scale = min(box[0] / width, box[1] / height, 1.0)
    return max(1, round(width * scale)), max(1, round(height * scale))


class _RGB:
    """``VideoFrame`` -> ``HxWx3`` uint8 at the given size, through one reused swscale context
    (a fresh one per frame, as ``VideoFrame.to_ndarray`` makes, costs more than the scaling;
    ``VideoFrame.to_image`` is slower still)."""

    def __init__(self) -> None:
        try:
            from av.video.reformatter import VideoReformatter

            self._reformatter: Any = VideoReformatter()
        except ImportError:  # pragma: no cover - very old PyAV
            self._reformatter = None

    def __call__(self, frame: Any, width: int, height: int) -> np.ndarray:
        interpolation = None if (width, height) == (frame.width, frame.height) else "AREA"
        if self._reformatter is None:  # pragma: no cover
            return frame.to_ndarray(width=width, height=height, format="rgb24", interpolation=interpolation)
        out = self._reformatter.reformat(frame, width=width, height=height, format="rgb24",
                                         interpolation=interpolation)
        return out.to_ndarray()


class _Converter:
    """VideoFrame -> upright PIL RGB image at the display aspect ratio, fitted to ``size``."""

    def __init__(self, stream: Any, size: int | tuple[int, int] | None) -> None:
        self.stream = stream
        self.size = size
        self.rgb = _RGB()
        sar = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio
        self.sar = Fraction(sar) if sar and sar > 0 else Fraction(1)

    def __call__(self, frame: Any) -> Image.Image:
        rot = _rotation(frame, self.stream) % 360
        w = max(1, round(frame.width * self.sar))
        h = frame.height
        quarter = rot in (90, 270)
        dw, dh = (h, w) if quarter else (w, h)  # displayed size
        ow, oh = _fit(dw, dh, self.size)
        if quarter:
            ow, oh = oh, ow
        img = Image.fromarray(self.rgb(frame, ow, oh))
        if rot == 90:
            img = img.transpose(Image.Transpose.ROTATE_90)
        elif rot == 180:
            img = img.transpose(Image.Transpose.ROTATE_180)
        elif rot == 270:
            img = img.transpose(Image.Transpose.ROTATE_270)
        elif rot:
            img = img.rotate(rot, expand=True)
        return img


class _Clock:
    """Presentation times of decoded frames, with the pts-less fallbacks."""

    def __init__(self, stream: Any) -> None:
        self.tb = stream.time_base or Fraction(1, 90000)
        self.start = stream.start_time if stream.start_time is not None else 0
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self.fps = float(rate) if rate else 0.0
        self.prev: float | None = None

    def __call__(self, frame: Any, index: int) -> float:
        if frame.pts is not None:
            tb = frame.time_base or self.tb
            t = float((frame.pts - self.start) * tb)
        elif self.prev is not None:
            t = self.prev + (1.0 / self.fps if self.fps else 0.0)
        else:
            t = index / self.fps if self.fps else 0.0
        self.prev = t
        return t


def _number(frame: Any, seen: list[int], decoded: int) -> int:
    """The frame's number in presentation order: the demuxed packets shown before it (all of
    them are demuxed by the time the decoder puts the frame out)."""
    if frame.pts is None or not seen:
        return decoded
    return bisect.bisect_left(seen, frame.pts)


def _ordered(frames: Iterator[Frame], max_frames: int | None) -> Iterator[Frame]:
    """Yield frames in timestamp order (a small reorder buffer), at most ``max_frames``."""
    heap: list[_Pending] = []
    emitted = 0
    for fr in frames:
        heapq.heappush(heap, _Pending((fr.timestamp, fr.index), fr))
        if len(heap) > _REORDER:
            yield heapq.heappop(heap).frame
            emitted += 1
            if max_frames is not None and emitted >= max_frames:
                return
    while heap:
        yield heapq.heappop(heap).frame
        emitted += 1
        if max_frames is not None and emitted >= max_frames:
            return


# --------------------------------------------------------------------------------------------- modes


def _scene(reader: _Reader, container: Any, stream: Any, convert: _Converter, every: float,
           min_gap: float, max_gap: float, threshold: float, stop: list[float]) -> Iterator[Frame]:
    av = reader.av
    clock = _Clock(stream)
    next_sample = -math.inf
    last_t: float | None = None
    last_small: np.ndarray | None = None
    seen: list[int] = []
    thumbs = _RGB()
    with contextlib.suppress(Exception):  # decoders that cannot skip ignore it
        stream.codec_context.skip_frame = "NONREF"
    tb, start = clock.tb, clock.start

    def at_sample(packet: Any) -> bool:
        return packet.pts is None or float((packet.pts - start) * tb) >= next_sample

    # intra-only codecs (MJPEG, ProRes...): packets between samples need no decoding at all
    want = at_sample if getattr(stream.codec_context.codec, "intra_only", False) else None
    for n, vf in enumerate(_decode(av, container, stream, want, seen=seen)):
        t = clock(vf, n)
        if t < next_sample:
            continue
        next_sample = (math.floor(t / every + 1e-6) + 1) * every - 1e-6
        small = thumbs(vf, _SMALL, _SMALL).astype(np.int16)
        if last_t is None or last_small is None:
            emit = True
        else:
            gap = t - last_t
            emit = gap >= max_gap or (
                gap >= min_gap and float(np.abs(small - last_small).mean()) > threshold
            )
        if emit:
            last_t, last_small = t, small
            yield Frame(convert(vf), t, _number(vf, seen, n), reader.name)
            if stop[0] <= 0:
                return


def _all_frames_mode(reader: _Reader, container: Any, stream: Any, convert: _Converter, mode: str,
                     every: float, min_gap: float, max_gap: float, stop: list[float]) -> Iterator[Frame]:
    """Single pass decoding every frame (for sources that cannot be read twice or lack pts)."""
    clock = _Clock(stream)
    last_t: float | None = None
    next_t = 0.0
    seen: list[int] = []
    for n, vf in enumerate(_decode(reader.av, container, stream, seen=seen)):
        t = clock(vf, n)
        if mode == "uniform":
            emit = last_t is None or t >= next_t - 1e-6
            if emit:
                next_t = (math.floor(t / every + 1e-6) + 1) * every
        else:
            gap = math.inf if last_t is None else t - last_t
            emit = gap >= max_gap or (bool(vf.key_frame) and gap >= min_gap)
        if emit:
            last_t = t
            yield Frame(convert(vf), t, _number(vf, seen, n), reader.name)
            if stop[0] <= 0:
                return


@dataclass
class _Index:
    pts: list[int]  # presentation times of all frames (packets), sorted
    keys: list[int]  # key frame pts, sorted
    start: int
    end: int  # pts just after the last frame
    missing_pts: bool


def _scan(av: Any, container: Any, stream: Any) -> _Index:
    """Demux (no decoding) to find the frames' times, the key frames and the end of the stream."""
    pts_list: list[int] = []
    keys: list[int] = []
    end: int | None = None
    missing = False
    for packet in _packets(av, container, stream):
        if packet.size == 0:
            continue
        pts = packet.pts if packet.pts is not None else packet.dts
        if pts is None:
            missing = True
            continue
        pts_list.append(pts)
        if packet.is_keyframe:
            keys.append(pts)
        stop = pts + (packet.duration or 0)
        end = stop if end is None else max(end, stop)
    pts_list = sorted(set(pts_list))
    start = stream.start_time if stream.start_time is not None else (pts_list[0] if pts_list else 0)
    return _Index(pts_list, sorted(set(keys)), start, end if end is not None else start,
                  missing or not keys)


def _plan(index: _Index, tb: Fraction, mode: str, every: float, min_gap: float, max_gap: float) -> list[int]:
    """The pts of the frames to emit (all in ``index.pts``), sorted."""
    times = [float((p - index.start) * tb) for p in index.pts]
    if mode == "uniform":
        out: list[int] = []
        next_t = -math.inf
        for p, t in zip(index.pts, times, strict=True):
            if t >= next_t - 1e-6:
                out.append(p)
                next_t = (math.floor(t / every + 1e-6) + 1) * every
        return out

    anchors: list[int] = []
    last = -math.inf
    for k in index.keys:
        t = float((k - index.start) * tb)
        if t - last >= min_gap:
            anchors.append(k)
            last = t
    wanted = set(anchors)
    end_t = float((index.end - index.start) * tb)
    bounds = [float((a - index.start) * tb) for a in anchors] + [end_t]
    for a, b in itertools.pairwise(bounds):
        span = b - a
        if span <= max_gap:
            continue
        lo, hi = bisect.bisect_right(times, a), bisect.bisect_left(times, b)
        n_fill = min(hi - lo, math.ceil(span / max_gap - 1e-9) - 1)
        for j in range(1, n_fill + 1):
            i = bisect.bisect_left(times, a + span * j / (n_fill + 1) - 1e-6)
            if i < len(index.pts):
                wanted.add(index.pts[i])
    return sorted(wanted)


def _planned(reader: _Reader, stream: Any, container: Any, convert: _Converter, wanted: list[int],
             index: _Index, stop: list[float]) -> Iterator[Frame]:
    """Second pass: decode the wanted key frames, and for other wanted frames everything from
    the key frame before them; emit the first frame at or after each wanted pts."""
    keys, all_pts = index.keys, index.pts
    wanted_keys = set(wanted).intersection(keys)
    region_end: dict[int, int] = {}  # key frame pts -> last wanted frame decoded from it
    for p in wanted:
        if p in wanted_keys:
            continue
        i = bisect.bisect_right(keys, p) - 1
        if i >= 0:
            region_end[keys[i]] = max(region_end.get(keys[i], p), p)
    pending = collections.deque(wanted)
    decode_until: int | None = None
    clock = _Clock(stream)

    def want(packet: Any) -> bool:
        nonlocal decode_until
        if not pending:
            return False
        pts = packet.pts if packet.pts is not None else packet.dts
        if packet.is_keyframe and pts in region_end:
            end = region_end[pts]
            decode_until = end if decode_until is None else max(decode_until, end)
        return decode_until is not None or (bool(packet.is_keyframe) and pts in wanted_keys)

    for n, vf in enumerate(_decode(reader.av, container, stream, want)):
        t = clock(vf, n)
        pts = vf.pts
        if pts is None:
            continue
        emit = False
        while pending and pts >= pending[0]:
            pending.popleft()
            emit = True
        if decode_until is not None and pts >= decode_until:
            decode_until = None
        if emit:
            number = bisect.bisect_left(all_pts, pts)  # the frame's number in presentation order
            yield Frame(convert(vf), t, number, reader.name)
            if stop[0] <= 0 or not pending:
                return


# --------------------------------------------------------------------------------------------- public


def extract_frames(
    source: VideoSource,
    mode: Mode = "scene",
    *,
    every: float | None = None,
    min_gap: float = 0.5,
    max_gap: float = 10.0,
    threshold: float = 30.0,
    max_frames: int | None = None,
    size: int | tuple[int, int] | None = None,
    threads: int | None = None,
) -> Iterator[Frame]:
    """Frames of a video for embedding, in time order (see the module docstring for modes).

    ``source`` is a path, the file's bytes or a binary file object. ``every`` is the seconds
    between compared frames in scene mode (0.25) or between frames in uniform mode (1.0);
    ``min_gap``/``max_gap`` bound the seconds between emitted frames (scene and key frame
    modes); ``threshold`` is the mean absolute RGB difference (0-255) of a scene change;
    ``max_frames`` stops early; ``size`` (max side, or a ``(w, h)`` box) shrinks the images in
    the decoder, keeping their aspect ratio; ``threads`` is the decoder's thread count (None:
    FFmpeg's choice, about one per core).

    The file is opened (and checked to have a video stream) when this is called; frames are
    decoded lazily. Raises :class:`MediaError` naming the file when it is not a readable video,
    has no video stream or no frame can be decoded; :class:`FileNotFoundError` for a missing
    path.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if every is None:
        every = _SCENE_EVERY if mode == "scene" else _UNIFORM_EVERY
    if not every > 0 or not max_gap > 0 or min_gap < 0:
        raise ValueError(f"every and max_gap must be > 0 and min_gap >= 0 (got {every}, {max_gap}, {min_gap})")
    if max_frames is not None and max_frames < 0:
        raise ValueError(f"max_frames must be >= 0, got {max_frames}")
    if isinstance(size, int) and size <= 0:
        raise ValueError(f"size must be positive, got {size}")

    reader = _Reader(source)
    container = reader.open()
    stream = reader.video_stream(container)
    return _extract(reader, container, stream, mode, float(every), float(min_gap), float(max_gap),
                    float(threshold), max_frames, size, threads)


def _extract(reader: _Reader, container: Any, stream: Any, mode: str, every: float, min_gap: float,
             max_gap: float, threshold: float, max_frames: int | None,
             size: int | tuple[int, int] | None, threads: int | None) -> Iterator[Frame]:
    if max_frames == 0:
        container.close()
        return
    # stop[0]: frames still wanted; the reorder buffer may hold _REORDER more, so the
    # producers run until max_frames + _REORDER frames are out (at most).
    stop = [math.inf if max_frames is None else max_frames + _REORDER]
    containers = [container]
    produced = 0
    try:
        _configure(stream, threads)
        convert = _Converter(stream, size)
        frames: Iterator[Frame]
        if mode == "scene":
            frames = _scene(reader, container, stream, convert, every, min_gap, max_gap, threshold, stop)
        elif not reader.reopenable:  # a stream that cannot be read twice: decode everything once
            frames = _all_frames_mode(reader, container, stream, convert, mode, every, min_gap, max_gap, stop)
        else:
            index = _scan(reader.av, container, stream)
            container.close()
            container = reader.open()
            containers.append(container)
            stream = container.streams.video[0]
            _configure(stream, threads)
            convert = _Converter(stream, size)
            if index.missing_pts:  # no timestamps to plan with
                frames = _all_frames_mode(reader, container, stream, convert, mode, every, min_gap,
                                          max_gap, stop)
            else:
                wanted = _plan(index, stream.time_base or Fraction(1, 90000), mode, every, min_gap, max_gap)
                frames = _planned(reader, stream, container, convert, wanted, index, stop)

        def counted() -> Iterator[Frame]:
            nonlocal produced
            for fr in frames:
                produced += 1
                stop[0] -= 1
                yield fr

        yield from _ordered(counted(), max_frames)
        if produced == 0:
            raise MediaError(f"{reader.name}: no video frame could be decoded (corrupt or empty video)")
    except MediaError:
        raise
    except reader.av.error.FFmpegError as exc:
        raise MediaError(f"{reader.name}: cannot decode the video ({exc})") from None
    finally:
        for c in containers:
            with contextlib.suppress(Exception):
                c.close()


def video_info(source: VideoSource) -> dict[str, Any]:
    """Duration (s), fps, displayed width/height, codec name and rotation of a video.

    Decodes the first frame (the rotation lives in its side data). Also returns ``frames``
    (the count the container declares, 0 when unknown) and ``has_audio``. Raises
    :class:`MediaError` for a file that is not a readable video.
    """
    reader = _Reader(source)
    container = reader.open()
    try:
        stream = reader.video_stream(container)
        tb = stream.time_base or Fraction(1, 90000)
        if stream.duration is not None:
            duration = float(stream.duration * tb)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        else:
            duration = 0.0
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        rotation = 0
        try:
            first = next(_decode(reader.av, container, stream), None)
        except reader.av.error.FFmpegError:
            first = None
        if first is not None:
            rotation = _rotation(first, stream)
        width, height = stream.codec_context.width, stream.codec_context.height
        sar = stream.sample_aspect_ratio
        if sar and sar > 0:
            width = round(width * sar)
        if rotation % 180 == 90:
            width, height = height, width
        return {
            "duration": duration,
            "fps": float(rate) if rate else 0.0,
            "width": int(width),
            "height": int(height),
            "codec": stream.codec_context.name,
            "rotation": rotation,
            "frames": int(stream.frames or 0),
            "has_audio": bool(container.streams.audio),
        }
    finally:
        container.close()
