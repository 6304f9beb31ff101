"""Video files, streamed: frames go to the encoder one at a time and are never all held in memory.

H.264 in MP4 through PyAV (a ComfyUI dependency). Writes are atomic: a temporary file in the same folder is
renamed into place only when complete, so a crash or cancel never leaves a half shot under the final name.
``count_frames`` decodes a file to check it is whole; ``concat_videos`` joins shots into the movie by copying
their compressed packets (no re-encoding, so no quality loss and little time).
"""

from __future__ import annotations

import functools
import sys
from fractions import Fraction
from typing import Iterable, Optional

import numpy as np

from .files import atomic_path


def _even(x: int) -> int:
    return x - (x % 2)


#: The x86 instruction sets x264 may use where the CPU has AVX-512: all of them but AVX-512. x264's AVX-512 code
#: encodes the same frames to other bytes from one encode to the next (it depends on what the process's memory held
#: before: about one encode in ten of a fading 320x180 or 64x48 shot, decoded pixels up to 35 levels apart; found when
#: a rerun's movie differed from a fresh one's). Without it every encode gives the bytes most encodes gave, so a shot
#: made again, or by another participant of a distributed run, is the same file. Any CPU with AVX-512 has the rest.
X264_WITHOUT_AVX512 = "MMX2,SSE,SSE2,SSE3,SSSE3,SSE4.1,SSE4.2,LZCNT,AVX,FMA3,BMI1,BMI2,AVX2"


@functools.lru_cache(maxsize=1)
def _x264_params() -> dict:
    """``{"x264-params": ...}`` keeping x264 off AVX-512 where the CPU has it (``X264_WITHOUT_AVX512``), else ``{}``."""
    return {"x264-params": "asm=" + X264_WITHOUT_AVX512} if _has_avx512() else {}


def _has_avx512() -> bool:
    """Whether this x86 CPU has AVX-512 (Linux: ``/proc/cpuinfo``; Windows: ``IsProcessorFeaturePresent``; macOS:
    ``hw.optional.avx512f``); ``False`` elsewhere (ARM, or when it cannot be told)."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return False
    try:
        if sys.platform.startswith("linux"):
            with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
                return any(line.startswith("flags") and " avx512f" in line for line in f)
        if sys.platform == "win32":
            import ctypes

            return bool(ctypes.windll.kernel32.IsProcessorFeaturePresent(41))  # PF_AVX512F_INSTRUCTIONS_AVAILABLE
        if sys.platform == "darwin":
            import ctypes
            import ctypes.util

            libc = ctypes.CDLL(ctypes.util.find_library("c"))
            value, size = ctypes.c_int(0), ctypes.c_size_t(ctypes.sizeof(ctypes.c_int))
            found = libc.sysctlbyname(b"hw.optional.avx512f", ctypes.byref(value), ctypes.byref(size), None, 0) == 0
            return found and value.value == 1
    except (OSError, AttributeError, ValueError):
        pass
    return False


def _encoder_threads() -> dict:
    """The encoder's threads: ``MOVIEDREAMER_THREADS`` when set (``threads.py``: then the same count on every
    participant of a distributed run gives the same files), else the encoder's own choice."""
    from .threads import configured_threads

    n = configured_threads()
    return {"threads": str(n)} if n else {}


def write_video(path: str, frames: Iterable[np.ndarray], fps: float, crf: int = 18) -> int:
    """Encode ``uint8 [H, W, 3]`` frames to an H.264 MP4 at ``path`` (atomically); returns the frame count.

    H.264 needs even sides: odd sizes are cropped by one pixel.
    """
    import av

    count = 0
    with atomic_path(path) as tmp:
        with av.open(tmp, mode="w", format="mp4") as container:
            stream = None
            for frame in frames:
                if stream is None:
                    h, w = _even(frame.shape[0]), _even(frame.shape[1])
                    stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
                    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
                    stream.options = {"crf": str(crf), "preset": "veryfast", **_x264_params(),
                                      **_encoder_threads()}
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:h, :w, :3]), format="rgb24")
                for packet in stream.encode(vf):
                    container.mux(packet)
                count += 1
            if stream is None:
                raise ValueError("no frames to write")
            for packet in stream.encode():
                container.mux(packet)
    return count


def video_info(path: str) -> Optional[dict]:
    """``{"frames", "width", "height", "fps"}`` by decoding the whole file, or ``None`` when it is missing,
    truncated or unreadable."""
    import av

    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            n = 0
            width = height = 0
            for frame in container.decode(stream):
                n += 1
                width, height = frame.width, frame.height
            fps = float(stream.average_rate) if stream.average_rate else 0.0
        return {"frames": n, "width": width, "height": height, "fps": fps} if n else None
    except Exception:  # av raises many error types for damaged files
        return None


def iter_frames(path: str):
    """Decoded frames as ``uint8 [H, W, 3]``, one at a time."""
    import av

    with av.open(path) as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")


def read_frames(path: str, every: int = 1) -> list:
    """Decoded frames (every ``every``-th) as ``uint8 [H, W, 3]``; for previews and tests."""
    return [f for i, f in enumerate(iter_frames(path)) if i % every == 0]


def _decoding_delay(path: str) -> int:
    """How far (in the stream's time base) the file's first packet is decoded before it is shown: 0 without
    B-frames."""
    import av

    with av.open(path) as inp:
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                return max(0, packet.pts - packet.dts)
    return 0


def concat_videos(paths: list[str], out_path: str) -> None:
    """Join MP4 files with identical encoding settings by copying packets (no re-encoding), atomically."""
    import av

    # H.264 with B-frames decodes a few frames ahead: a file's first decoding time is before its first presentation
    # time by its delay (two frames for a long shot, none for a shot of one frame). Shifted by the same offset, a long
    # shot after a one-frame shot would have decoding times going back, which the muxer refuses; every file's
    # decoding times are therefore moved back to the largest delay, as one long encode would have them.
    delays = [_decoding_delay(path) for path in paths]
    most = max(delays, default=0)
    with atomic_path(out_path) as tmp:
        with av.open(tmp, mode="w", format="mp4") as output:
            out_stream = None
            offset = 0
            for path, delay in zip(paths, delays):
                with av.open(path) as inp:
                    in_stream = inp.streams.video[0]
                    if out_stream is None:
                        out_stream = output.add_stream_from_template(in_stream)
                    last = 0
                    for packet in inp.demux(in_stream):
                        if packet.dts is None:
                            continue
                        last = max(last, packet.pts + (packet.duration or 0), packet.dts + (packet.duration or 0))
                        packet.pts += offset
                        packet.dts += offset - (most - delay)
                        packet.stream = out_stream
                        output.mux(packet)
                    offset += last
