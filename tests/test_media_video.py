"""Frame extraction from generated videos with known shot boundaries."""

from __future__ import annotations

import io
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

from media_fixtures import (  # noqa: E402
    CODECS,
    COLOURS,
    flip_bytes,
    has_encoder,
    make_audio,
    make_video,
    shot_times,
    truncate,
)

from multimodal_store.errors import MediaError  # noqa: E402
from multimodal_store.media import Frame, extract_frames, video_info  # noqa: E402

DURATIONS = (2.0, 3.0, 2.0)  # shots: red 0-2 s, green 2-5 s, blue 5-7 s
FPS = 25


def _codec_params() -> list[object]:
    return [pytest.param(c, marks=pytest.mark.skipif(not has_encoder(c), reason=f"no {c} encoder"))
            for c in CODECS]


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A few videos written once for the module (each takes ~0.1-0.3 s to encode)."""
    root = tmp_path_factory.mktemp("videos")
    out: dict[str, Path] = {}
    for codec, (fmt, _) in CODECS.items():
        if has_encoder(codec):
            out[codec] = root / f"shots_{codec}.{fmt.replace('matroska', 'mkv')}"
            make_video(out[codec], durations=DURATIONS, codec=codec, fps=FPS)
    out["long_gop"] = root / "long_gop.mp4"  # one key frame at 0, then 19 s of P frames
    make_video(out["long_gop"], durations=(2.0, 3.0, 2.0, 12.0), gop=10_000, fps=FPS)
    if has_encoder("libvpx-vp9"):
        out["long_gop_vp9"] = root / "long_gop.webm"
        make_video(out["long_gop_vp9"], durations=(2.0, 3.0, 9.0), codec="libvpx-vp9", gop=10_000, fps=FPS)
    out["gop25"] = root / "gop25.mp4"  # a key frame every second
    make_video(out["gop25"], durations=(2.0, 3.0, 2.0), gop=25, fps=FPS)
    out["audio_only"] = root / "tone.m4a"
    make_audio(out["audio_only"], duration=1.0)
    return out


def _shot_of(t: float, durations: tuple[float, ...] = DURATIONS) -> int:
    for i, (s, e) in enumerate(shot_times(durations)):
        if s - 1e-6 <= t < e:
            return i
    return len(durations) - 1


def _colour_ok(frame: Frame, shot: int) -> bool:
    pixel = np.asarray(frame.image.getpixel((2, 2)), dtype=int)  # corner: background, not the square
    return bool(np.abs(pixel - np.asarray(COLOURS[shot])).max() < 40)


def _check_sorted(frames: list[Frame]) -> None:
    ts = [f.timestamp for f in frames]
    assert ts == sorted(ts)
    assert len(set(ts)) == len(ts)


@pytest.mark.parametrize("codec", _codec_params())
def test_scene_mode_finds_every_shot(videos: dict[str, Path], codec: str) -> None:
    frames = list(extract_frames(videos[codec]))
    _check_sorted(frames)
    assert frames[0].timestamp == 0.0 and frames[0].index == 0
    boundaries = [s for s, _ in shot_times(DURATIONS)]
    for shot, b in enumerate(boundaries):
        inside = [f for f in frames if _shot_of(f.timestamp) == shot]
        assert inside, f"no frame in shot {shot} ({codec}): {[f.timestamp for f in frames]}"
        assert min(abs(f.timestamp - b) for f in inside) <= 0.3  # sampled at 4 fps
        assert all(_colour_ok(f, shot) for f in inside)
    assert len(frames) <= 2 * len(DURATIONS)  # the moving square alone does not trigger
    for f in frames:
        assert f.image.mode == "RGB" and f.image.size == (160, 96)
        assert f.source == str(videos[codec])
        assert f.index == round(f.timestamp * FPS)


def test_scene_mode_max_gap_and_min_gap(videos: dict[str, Path]) -> None:
    frames = list(extract_frames(videos["long_gop"], max_gap=4.0))
    ts = [f.timestamp for f in frames]
    # shots at 0, 2, 5, 7, then 12 s of one shot: frames every <= 4 s there
    assert all(b - a <= 4.0 + 1e-6 for a, b in itertools.pairwise(ts))
    assert ts[-1] >= 19.0 - 4.0 - 0.3
    # min_gap larger than the shots: changes closer than it are not emitted
    sparse = [f.timestamp for f in extract_frames(videos["libx264"], min_gap=2.5, max_gap=100)]
    assert all(b - a >= 2.5 - 1e-6 for a, b in itertools.pairwise(sparse))
    # a threshold above any difference leaves the first frame and the max_gap frames only
    assert [f.timestamp for f in extract_frames(videos["libx264"], threshold=300.0)] == [0.0]


@pytest.mark.parametrize("name", ["long_gop", "long_gop_vp9"])
def test_keyframes_mode_fills_long_gaps(videos: dict[str, Path], name: str) -> None:
    if name not in videos:
        pytest.skip("no VP9 encoder")
    key_pts = []
    with av.open(str(videos[name])) as c:
        for p in c.demux(c.streams.video[0]):
            if p.is_keyframe and p.size:
                key_pts.append(p.pts)
    assert len(key_pts) == 1  # the encoder made a single key frame
    end = video_info(videos[name])["duration"]
    frames = list(extract_frames(videos[name], "keyframes", max_gap=3.0))
    _check_sorted(frames)
    ts = [0.0, *[f.timestamp for f in frames], end]
    assert frames[0].timestamp == 0.0
    assert max(b - a for a, b in itertools.pairwise(ts)) <= 3.0 + 1.5 / FPS
    assert len(frames) >= end / 3.0 - 1
    for f in frames:  # the filled frames are the right pictures, not garbage
        assert _colour_ok(f, _shot_of(f.timestamp, (2.0, 3.0, 2.0, 12.0) if name == "long_gop" else (2.0, 3.0, 9.0)))
        assert f.index == round(f.timestamp * FPS)


def test_keyframes_mode_uses_key_frames(videos: dict[str, Path]) -> None:
    frames = list(extract_frames(videos["gop25"], "keyframes"))
    assert [round(f.timestamp, 3) for f in frames] == [float(i) for i in range(7)]
    # min_gap drops key frames too close to the previous one
    frames = list(extract_frames(videos["gop25"], "keyframes", min_gap=1.5))
    assert [round(f.timestamp, 3) for f in frames] == [0.0, 2.0, 4.0, 6.0]


@pytest.mark.parametrize("every", [1.0, 0.5, 2.5])
def test_uniform_mode(videos: dict[str, Path], every: float) -> None:
    frames = list(extract_frames(videos["gop25"], "uniform", every=every))
    duration = sum(DURATIONS)
    assert len(frames) == int(np.ceil(duration / every))
    for k, f in enumerate(frames):
        assert abs(f.timestamp - k * every) < 1 / FPS + 1e-6
        assert _colour_ok(f, _shot_of(f.timestamp))


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_metadata_is_applied(tmp_path: Path, rotation: int) -> None:
    path = tmp_path / f"rot{rotation}.mp4"
    make_video(path, durations=(1.0,), rotation=rotation, top_band=True, fps=FPS)
    info = video_info(path)
    assert info["rotation"] == rotation
    frame = next(iter(extract_frames(path)))
    img = np.asarray(frame.image).astype(int).sum(axis=2)
    # stored 160x96 with a black band on top; displayed rotated counter-clockwise by `rotation`
    if rotation in (90, -90):
        assert frame.image.size == (96, 160) and (info["width"], info["height"]) == (96, 160)
        band, other = (img[:, :10], img[:, -10:]) if rotation == 90 else (img[:, -10:], img[:, :10])
    else:
        assert frame.image.size == (160, 96)
        band, other = img[-10:], img[:10]
    assert band.mean() < 60 < other.mean()


def test_variable_frame_rate_timestamps(tmp_path: Path) -> None:
    times = [0.0, 0.04, 0.1, 0.5, 0.52, 0.9, 1.3, 1.33, 2.0, 2.75, 3.0]
    path = tmp_path / "vfr.mp4"
    make_video(path, durations=(1.5, 1.6), times=times, fps=FPS)
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        expected = [float(f.pts * s.time_base) for f in c.decode(s)]
    assert np.allclose(expected, times, atol=1e-3)
    frames = list(extract_frames(path, "uniform", every=0.01))
    assert [f.timestamp for f in frames] == expected
    assert [f.index for f in frames] == list(range(len(times)))
    scene = [f.timestamp for f in extract_frames(path)]
    assert set(scene) <= set(expected)
    assert scene[:2] == [0.0, expected[8]]  # the first frame of the second shot (2.0 s)


def test_sources_path_bytes_and_file_objects(videos: dict[str, Path]) -> None:
    path = videos["gop25"]
    data = path.read_bytes()
    ref = [f.timestamp for f in extract_frames(path, "uniform")]
    assert [f.timestamp for f in extract_frames(data, "uniform")] == ref
    assert [f.timestamp for f in extract_frames(io.BytesIO(data), "uniform")] == ref
    with open(path, "rb") as fh:
        frames = list(extract_frames(fh, "keyframes"))
        assert frames and frames[0].source == str(path)

    class NoSeek(io.RawIOBase):  # a pipe-like stream: the key frame scan cannot re-read it
        def __init__(self, raw: bytes) -> None:
            self._buf = io.BytesIO(raw)

        def readable(self) -> bool:
            return True

        def seekable(self) -> bool:
            return False

        def readinto(self, b: bytearray) -> int:  # type: ignore[override]
            chunk = self._buf.read(len(b))
            b[: len(chunk)] = chunk
            return len(chunk)

    assert [f.timestamp for f in extract_frames(NoSeek(data), "uniform")] == ref
    assert [round(f.timestamp, 3) for f in extract_frames(NoSeek(data), "keyframes")] == [float(i) for i in range(7)]


def test_max_frames_and_size(videos: dict[str, Path]) -> None:
    frames = list(extract_frames(videos["gop25"], "uniform", max_frames=3, size=64))
    assert [f.timestamp for f in frames] == [0.0, 1.0, 2.0]
    assert all(f.image.size == (64, 38) for f in frames)
    boxed = next(iter(extract_frames(videos["gop25"], size=(40, 40))))
    assert boxed.image.size == (40, 24)
    assert list(extract_frames(videos["gop25"], max_frames=0)) == []


def test_video_info(videos: dict[str, Path]) -> None:
    info = video_info(videos["libx264"])
    assert info["codec"] == "h264" and info["fps"] == FPS
    assert (info["width"], info["height"], info["rotation"]) == (160, 96, 0)
    assert abs(info["duration"] - 7.0) < 0.1
    assert info["has_audio"] is False
    with_audio = make_video(durations=(1.0,), audio=True)
    assert video_info(with_audio)["has_audio"] is True
    assert len(list(extract_frames(with_audio, "uniform"))) == 1


def test_unreadable_files_raise_media_error(videos: dict[str, Path], tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_bytes(b"this is not a video at all, just some text " * 20)
    with pytest.raises(MediaError, match="notes.mp4"):
        extract_frames(text)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(truncate(videos["libx264"].read_bytes(), 0.5))  # moov is at the end
    with pytest.raises(MediaError, match="cut.mp4"):
        list(extract_frames(cut))
    with pytest.raises(MediaError, match=r"tone.m4a.*no video stream.*audio"):
        extract_frames(videos["audio_only"])
    with pytest.raises(MediaError, match="tone.m4a"):
        video_info(videos["audio_only"])
    with pytest.raises(MediaError, match="bytes"):
        extract_frames(b"\x00\x01garbage" * 100)
    with pytest.raises(FileNotFoundError):
        extract_frames(tmp_path / "missing.mp4")
    with pytest.raises(ValueError, match="mode"):
        extract_frames(videos["libx264"], "everything")  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("mode", ["scene", "keyframes", "uniform"])
def test_byte_flipped_video_does_not_crash_or_hang(videos: dict[str, Path], tmp_path: Path, seed: int,
                                                   mode: str) -> None:
    path = tmp_path / f"flipped{seed}.mp4"
    path.write_bytes(flip_bytes(videos["libx264"].read_bytes(), n=30, seed=seed, start=0.05, stop=0.8))
    start = time.monotonic()
    try:
        frames = list(extract_frames(path, mode))
    except MediaError as exc:
        assert str(path) in str(exc)
    else:
        assert frames
        _check_sorted(frames)
    assert time.monotonic() - start < 20


def test_missing_pyav_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "av", None)  # as if PyAV were not installed
    with pytest.raises(ImportError, match=r"multimodal-store\[video\]"):
        extract_frames(b"\x00" * 10)
