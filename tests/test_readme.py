"""Every command in the README runs: its bash and python blocks, in order, as one script in a
scratch directory (budgets shrunk with SIMGATE_SMOKE=1). A block that cannot run here carries a
`<!-- readme: not run here - REASON -->` line naming the test that exercises it instead."""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP = re.compile(r"<!-- readme: not run here - (.+?) -->")
LOCAL = {"runs", "out", "registry", "gateway-tokens.json", "gateway-audit.jsonl", ".git", ".pytest_cache"}


def readme_blocks() -> list[tuple[str, str, str | None]]:
    """(language, code, skip reason) of every fenced block with a language."""
    out, lines, i, prev = [], (ROOT / "README.md").read_text().splitlines(), 0, ""
    while i < len(lines):
        m = re.match(r"^```(\w+)\s*$", lines[i])
        if m:
            j = lines.index("```", i + 1)
            skip = SKIP.search(prev)
            out.append((m.group(1), "\n".join(lines[i + 1:j]), skip.group(1) if skip else None))
            i, prev = j + 1, ""
            continue
        if lines[i].strip():
            prev = lines[i]
        i += 1
    return out


def test_blocks_not_run_here_say_why_and_name_an_existing_test():
    blocks = readme_blocks()
    assert sum(1 for b in blocks if b[2] is None) >= 8, "most README blocks must run"
    for lang, code, reason in blocks:
        assert lang in ("bash", "python"), f"unexpected block language {lang!r}"
        if reason is not None:
            named = re.findall(r"tests/test_\w+\.py", reason)
            assert named and all((ROOT / t).is_file() for t in named), f"block {code[:60]!r}: {reason!r}"


def test_every_runnable_readme_block_runs(tmp_path):
    for entry in ROOT.iterdir():  # a scratch checkout: the repository's files, its own runs/ and out/
        if entry.name not in LOCAL:
            (tmp_path / entry.name).symlink_to(entry)
    parts = ["set -euo pipefail"]
    for n, (lang, code, reason) in enumerate(readme_blocks()):
        if reason is not None:
            continue
        parts.append(f"echo '### README block {n} ({lang})' >&2")
        parts.append("set -x\n" + code + "\nset +x" if lang == "bash" else f".venv/bin/python - <<'PYEOF'\n{code}\nPYEOF")
    script = tmp_path / "readme.sh"
    script.write_text("\n".join(parts) + "\n")
    env = {**os.environ, "SIMGATE_SMOKE": "1", "COLUMNS": "120"}
    log = tmp_path / "readme.log"
    with open(log, "w") as f:  # a file, not a pipe: background servers keep their copy of it open
        proc = subprocess.Popen(["bash", str(script)], cwd=tmp_path, env=env, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            proc.wait(timeout=900)
        finally:
            try:  # the servers the blocks started in the background (same process group)
                os.killpg(proc.pid, signal.SIGTERM)
                time.sleep(1.0)
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    out = log.read_text()
    assert proc.returncode == 0, out[-6000:]
    # what the blocks were for actually happened
    assert (tmp_path / "out" / "pnp.mp4").stat().st_size > 1000
    assert (tmp_path / "out" / "reach.ts").stat().st_size > 1000
    assert list((tmp_path / "runs" / "research").glob("*/report.md"))
    assert '"type": "ack"' in out or "'type': 'ack'" in out  # the WebSocket example got its acknowledgement
    assert '"health"' in out
