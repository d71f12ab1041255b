"""Audio decoding to mono float32 samples, with PyAV (``pip install 'multimodal-store[video]'``).

Works on audio files (WAV, MP3, AAC/M4A, FLAC, Ogg...) and on the audio track of video files.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from multimodal_store.errors import MediaError
from multimodal_store.media.video import VideoSource, _decode, _Reader

__all__ = ["audio_info", "load_audio"]

AudioSource = VideoSource


def _audio_stream(reader: _Reader, container: Any) -> Any:
    if not container.streams.audio:
        video = len(container.streams.video)
        found = f"{video} video stream(s)" if video else "no audio or video stream"
        raise MediaError(f"{reader.name}: no audio stream (found {found})")
    return container.streams.audio[0]


def _mono(frame: Any) -> np.ndarray:
    """The mean of the channels of a planar float frame."""
    planes = frame.to_ndarray()  # (channels, samples)
    return planes.mean(axis=0, dtype=np.float32) if planes.shape[0] > 1 else planes.reshape(-1)


def load_audio(source: AudioSource, sr: int = 16000, *, offset: float = 0.0,
               duration: float | None = None) -> np.ndarray:
    """Decode the first audio stream to a mono float32 array in [-1, 1] at ``sr`` Hz.

    The rate is converted by FFmpeg's resampler (PyAV ``AudioResampler``, planar float);
    channels are then averaged (FFmpeg's own down-mix adds them at -3 dB, which makes
    identical channels 41% louder and can clip). ``offset``/``duration`` (seconds) cut the result. Corrupt packets
    are skipped; a file without audio, or whose audio cannot be decoded at all, raises
    :class:`~multimodal_store.errors.MediaError` naming the file.
    """
    if sr <= 0:
        raise ValueError(f"sr must be positive, got {sr}")
    reader = _Reader(source, kind="audio")
    av = reader.av
    container = reader.open()
    chunks: list[np.ndarray] = []
    try:
        stream = _audio_stream(reader, container)
        stream.thread_type = "AUTO"
        resampler = None
        decoded = 0
        for frame in _decode(av, container, stream):
            decoded += 1
            if resampler is None:  # keep the channels: they are averaged below
                resampler = av.AudioResampler(format="fltp", layout=frame.layout.name, rate=sr)
            frame.pts = None  # the resampler does not need (possibly broken) timestamps
            chunks.extend(_mono(out) for out in resampler.resample(frame))
        if resampler is not None:
            chunks.extend(_mono(out) for out in resampler.resample(None))
        if decoded == 0:
            raise MediaError(f"{reader.name}: no audio could be decoded (corrupt or empty audio stream)")
    except MediaError:
        raise
    except (av.error.FFmpegError, ValueError) as exc:
        raise MediaError(f"{reader.name}: cannot decode the audio ({exc})") from None
    finally:
        container.close()
    samples = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    start = max(0, round(offset * sr))
    stop = None if duration is None else start + max(0, round(duration * sr))
    samples = samples[start:stop]
    np.clip(samples, -1.0, 1.0, out=samples)
    return samples


def audio_info(source: AudioSource) -> dict[str, Any]:
    """``duration`` (s), ``sample_rate``, ``channels``, ``codec`` of the first audio stream
    (from the container headers, no decoding). Raises :class:`MediaError` when unreadable."""
    reader = _Reader(source, kind="audio")
    container = reader.open()
    try:
        stream = _audio_stream(reader, container)
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        else:
            duration = 0.0
        cc = stream.codec_context
        return {
            "duration": duration,
            "sample_rate": int(cc.sample_rate or stream.rate or 0),
            "channels": int(cc.channels if hasattr(cc, "channels") else cc.layout.nb_channels),
            "codec": cc.name,
        }
    finally:
        container.close()
