"""Test-only faults, loaded into a simgate process (and its children) by putting this folder on
PYTHONPATH (``tests/faults.py: fault_env``). simgate itself has no fault hooks; these patch it from
outside, as an attacker's or a crash's effect would look.

  SIMGATE_TEST_LIE=all|N,M          a lying worker: trials N, M (or all) tell the study a score of 1.0
  SIMGATE_TEST_CRASH_LEDGER=after-append:K | mid-append:K
                                    SIGKILL this process at its K-th append to a ledger.jsonl: after
                                    the record is on disk (before the head files), or with only the
                                    first half of the record's line written (a torn record)
"""

import os
import signal

_LIE = os.environ.get("SIMGATE_TEST_LIE", "")
_CRASH = os.environ.get("SIMGATE_TEST_CRASH_LEDGER", "")

if _LIE:
    import optuna

    _tell = optuna.study.Study.tell

    def _lying_tell(self, trial, values=None, state=None, skip_if_finished=False):
        number = trial if isinstance(trial, int) else trial.number
        if values is not None and state is None and (_LIE == "all" or str(number) in _LIE.split(",")):
            values = 1.0
        return _tell(self, trial, values, state=state, skip_if_finished=skip_if_finished)

    optuna.study.Study.tell = _lying_tell

if _CRASH:
    _point, _k = _CRASH.split(":")
    _fsync = os.fsync
    _seen = [0]

    def _crashing_fsync(fd):
        _fsync(fd)
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return
        if not path.endswith("ledger.jsonl"):
            return
        _seen[0] += 1
        if _seen[0] != int(_k):
            return
        if _point == "mid-append":  # cut the record just written in half
            with open(path, "rb") as f:
                data = f.read()
            start = data.rfind(b"\n", 0, len(data) - 1) + 1
            os.truncate(path, start + (len(data) - start) // 2)
        os.kill(os.getpid(), signal.SIGKILL)

    os.fsync = _crashing_fsync
