"""Media decoding: images (Pillow), video frames and audio (PyAV, imported on first use).

Install the video/audio extra for :func:`extract_frames`, :func:`video_info`,
:func:`load_audio` and :func:`audio_info`: ``pip install 'multimodal-store[video]'``.
"""

from __future__ import annotations

from multimodal_store.media.audio import audio_info, load_audio
from multimodal_store.media.images import (
    KEPT_FORMATS,
    EncodedImage,
    ImageLike,
    decode_image,
    encode_image,
    image_info,
    load_image,
    thumbnail,
    to_rgb,
)
from multimodal_store.media.video import MODES, Frame, VideoSource, extract_frames, video_info

__all__ = [
    "KEPT_FORMATS",
    "MODES",
    "EncodedImage",
    "Frame",
    "ImageLike",
    "VideoSource",
    "audio_info",
    "decode_image",
    "encode_image",
    "extract_frames",
    "image_info",
    "load_audio",
    "load_image",
    "thumbnail",
    "to_rgb",
    "video_info",
]
