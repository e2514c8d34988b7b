"""Camera frames for REST and MCP: encoded off the event loop, rate-limited per token, with a small
cache so identical requests at the same robot state cost one render."""

from __future__ import annotations

import collections
import io
import threading

from simgate.errors import SimgateError
from simgate.gateway.access import RateLimiter


class FrameRateLimited(SimgateError):
    """Too many camera frames for this token (HTTP 429)."""


class FrameServer:
    def __init__(self, backend, frames_per_s: float = 5.0, burst: int = 5, cache_frames: int = 8) -> None:
        self.backend = backend
        self.rate = RateLimiter(frames_per_s, burst)
        self._cache: collections.OrderedDict = collections.OrderedDict()
        self._cache_frames = cache_frames
        self._lock = threading.Lock()

    def frame(self, who: str, width: int, height: int, fmt: str = "png") -> bytes:
        if not hasattr(self.backend, "camera_image"):
            raise SimgateError("this backend has no camera")
        if not (16 <= width <= 1280 and 16 <= height <= 960):
            raise SimgateError("width must be 16..1280 and height 16..960 pixels")
        if not self.rate.allow(who):
            raise FrameRateLimited(f"camera rate limit: at most {self.rate.rate:g} frames/s per token")
        stamp = round(self.backend.read().stamp_s, 2)
        key = (width, height, fmt, stamp)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        data = self._encoded(width, height, fmt)
        with self._lock:
            self._cache[key] = data
            while len(self._cache) > self._cache_frames:
                self._cache.popitem(last=False)
        return data

    def _encoded(self, width: int, height: int, fmt: str) -> bytes:
        import inspect

        if "fmt" in inspect.signature(self.backend.camera_image).parameters:
            return self.backend.camera_image(width, height, fmt=fmt)  # encoded off this process
        import imageio.v2 as imageio

        rgb, _depth = self.backend.camera_image(width, height)
        buf = io.BytesIO()
        imageio.imwrite(buf, rgb, format=fmt)
        return buf.getvalue()

    def close(self) -> None:
        with self._lock:
            self._cache.clear()
