"""Peak joint speed of a backend while something moves it: sampled every ``period_s`` from the
backend's own readings (reported velocities, and finite differences over >= 100 ms windows, since
reading stamps jitter by a tick under load)."""

import threading
import time

import numpy as np


class SpeedProbe:
    """``peak_reported``: the backend's own joint velocity measurement (physics or servo), the
    quantity the limit is about. ``peak_fd``: finite differences of positions over wall-clock
    windows of >= 0.2 s, a cross-check only - a simulated arm's reading stamps are wall time while
    its physics advances a fixed step per tick, so a late tick followed by a catching-up one puts
    more simulated time into a window than its wall time (up to a tick, 10-20 % at 50 Hz)."""

    WINDOW_S = 0.2

    def __init__(self, backend, period_s: float = 0.002) -> None:
        self.backend, self.period_s = backend, period_s
        self.peak_fd = np.zeros(backend.spec.dof)
        self.peak_reported = np.zeros(backend.spec.dof)
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        hist = []
        while not self._stop.is_set():
            st = self.backend.read()
            if st.health.status == "ok" and (not hist or st.stamp_s > hist[-1].stamp_s):
                hist.append(st)
                while len(hist) > 1 and st.stamp_s - hist[1].stamp_s >= self.WINDOW_S:
                    hist.pop(0)
                if st.stamp_s - hist[0].stamp_s >= self.WINDOW_S:
                    v = np.abs(np.array(st.positions) - np.array(hist[0].positions)) / (st.stamp_s - hist[0].stamp_s)
                    self.peak_fd = np.maximum(self.peak_fd, v)
                self.peak_reported = np.maximum(self.peak_reported, np.abs(np.array(st.velocities)))
            time.sleep(self.period_s)

    def peak_over_limit(self, vmax) -> float:
        """The largest measured joint speed as a fraction of ``vmax`` (rad/s per joint)."""
        return float(np.max(self.peak_reported / vmax))

    def peak_fd_over_limit(self, vmax) -> float:
        return float(np.max(self.peak_fd / vmax))

    def __enter__(self):
        self._th.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._th.join(timeout=2)
