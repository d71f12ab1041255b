"""Audio decoding: mono float32 at the requested rate, from audio files and video tracks."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")

from media_fixtures import flip_bytes, has_encoder, make_audio, make_video

from multimodal_store.errors import MediaError
from multimodal_store.media import audio_info, load_audio


def _peak_hz(samples: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / sr)[int(np.argmax(spectrum))])


@pytest.mark.parametrize(("codec", "channels"), [("pcm_s16le", 2), ("pcm_s16le", 1), ("aac", 2), ("flac", 2),
                                                 ("mp3", 1)])
def test_load_audio_resamples_to_mono(tmp_path: Path, codec: str, channels: int) -> None:
    if not has_encoder(codec):
        pytest.skip(f"no {codec} encoder")
    path = tmp_path / f"tone.{codec}"
    make_audio(path, duration=1.0, freq=440.0, sr=44100, channels=channels, codec=codec)
    samples = load_audio(path, sr=16000)
    assert samples.dtype == np.float32 and samples.ndim == 1
    # lossy codecs add encoder delay/padding: a few thousand samples at most
    tolerance = 10 if codec.startswith("pcm") or codec == "flac" else 3000
    assert abs(len(samples) - 16000) <= tolerance
    assert np.abs(samples).max() <= 1.0
    assert abs(_peak_hz(samples, 16000) - 440.0) < 5.0
    middle = samples[4000:12000]
    assert abs(np.abs(middle).max() - 0.5) < 0.05  # down-mixed, not summed: same amplitude


def test_rates_sources_and_cuts(tmp_path: Path) -> None:
    data = make_audio(duration=2.0, codec="pcm_s16le", sr=48000)
    a8k = load_audio(data, sr=8000)
    assert abs(len(a8k) - 16000) <= 5
    assert abs(_peak_hz(a8k, 8000) - 440.0) < 5.0
    assert np.allclose(load_audio(io.BytesIO(data), sr=8000), a8k)
    cut = load_audio(data, sr=8000, offset=0.5, duration=1.0)
    assert len(cut) == 8000
    assert np.allclose(cut, a8k[4000:12000])
    with pytest.raises(ValueError):
        load_audio(data, sr=0)


def test_audio_track_of_a_video() -> None:
    video = make_video(durations=(1.0,), audio=True)
    samples = load_audio(video, sr=16000)
    assert abs(len(samples) - 16000) <= 3000
    assert abs(_peak_hz(samples, 16000) - 440.0) < 5.0
    info = audio_info(video)
    assert info["codec"] == "aac" and info["channels"] == 1 and info["sample_rate"] == 44100


def test_audio_info(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    make_audio(path, duration=1.5, codec="pcm_s16le", sr=22050, channels=2)
    info = audio_info(path)
    assert info["sample_rate"] == 22050 and info["channels"] == 2 and info["codec"] == "pcm_s16le"
    assert abs(info["duration"] - 1.5) < 0.01


def test_unreadable_audio_raises_media_error(tmp_path: Path) -> None:
    bad = tmp_path / "voice.wav"
    bad.write_bytes(b"not audio " * 50)
    with pytest.raises(MediaError, match="voice.wav"):
        load_audio(bad)
    with pytest.raises(MediaError, match="voice.wav"):
        audio_info(bad)
    silent = tmp_path / "silent.mp4"
    make_video(silent, durations=(0.5,))
    with pytest.raises(MediaError, match=r"silent.mp4.*no audio stream"):
        load_audio(silent)
    with pytest.raises(FileNotFoundError):
        load_audio(tmp_path / "missing.wav")


def test_byte_flipped_audio_does_not_crash(tmp_path: Path) -> None:
    data = make_audio(duration=1.0, codec="aac")
    for seed in range(3):
        path = tmp_path / f"flipped{seed}.m4a"
        path.write_bytes(flip_bytes(data, n=20, seed=seed))
        try:
            samples = load_audio(path)
        except MediaError as exc:
            assert str(path) in str(exc)
        else:
            assert samples.dtype == np.float32 and np.abs(samples).max() <= 1.0
