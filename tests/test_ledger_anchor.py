"""The ledger is authenticated (a key outside the study dir) and anchored (a head file): every
way to edit history without the key is named by `research verify-ledger`; registry entries are
checked against the record they cite and `policies list` marks those that fail."""

import hashlib
import hmac
import json
import os
import stat
import subprocess
import sys

import pytest

from simgate.autoresearch.ledger import MAX_RECORD_BYTES, Ledger, LedgerError
from simgate.autoresearch.records import NoticeRecord, TrialRecord


@pytest.fixture(autouse=True)
def _keys(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMGATE_KEY_DIR", str(tmp_path / "keys"))


def make_ledger(path, n=4):
    led = Ledger.create(path, dict(study="t", program_sha256="a" * 64, spec_sha256="b" * 64, program_text="x",
                                   smoke=False, created_at="now"))
    for i in range(n):
        led.append(TrialRecord(trial=i, status="keep" if i == 1 else "discard", reason=f"trial {i}"))
    return led


def _verify_cli(path, tmp_path, *extra):
    return subprocess.run([sys.executable, "-m", "simgate.cli", "research", "verify-ledger", str(path), *extra],
                          cwd=tmp_path, capture_output=True, text=True, env=dict(os.environ), timeout=120)


def _lines(led):
    return led.path.read_text().splitlines()


def _write(led, lines):
    led.path.write_text("".join(ln + "\n" for ln in lines))


def test_key_lives_outside_the_study_and_is_private(tmp_path):
    led = make_ledger(tmp_path / "study" / "ledger.jsonl")
    key = tmp_path / "keys" / f"{led.key_id()}.key"
    assert key.exists() and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert not any(p.suffix == ".key" for p in (tmp_path / "study").iterdir())
    assert led.verify() == 5 and (tmp_path / "study" / "ledger.head").exists()


def _drop_last(led):
    _write(led, _lines(led)[:-1])


def _truncate(led):
    _write(led, _lines(led)[:2])


def _forged_append(led):
    lines = _lines(led)
    last = json.loads(lines[-1])
    body = TrialRecord(trial=99, status="keep", reason="forged").model_dump(mode="json")
    fake_key = os.urandom(32)
    payload = json.dumps({"seq": last["seq"] + 1, "prev": last["mac"], "body": body}, sort_keys=True,
                         separators=(",", ":")).encode()
    lines.append(json.dumps({"seq": last["seq"] + 1, "prev": last["mac"], "body": body,
                             "mac": hmac.new(fake_key, payload, hashlib.sha256).hexdigest()}))
    _write(led, lines)


def _rewrite_rechain(led):
    """Edit record 2 and recompute every later link, as the old SHA-256 chain allowed."""
    recs = [json.loads(ln) for ln in _lines(led)]
    recs[2]["body"]["status"] = "keep"
    prev = recs[1]["mac"]
    for r in recs[2:]:
        r["prev"] = prev
        r["mac"] = hashlib.sha256(json.dumps({"seq": r["seq"], "prev": prev, "body": r["body"]}, sort_keys=True,
                                             separators=(",", ":")).encode()).hexdigest()
        prev = r["mac"]
    _write(led, [json.dumps(r) for r in recs])


@pytest.mark.parametrize("attack, named", [
    (_drop_last, "record 4 is missing"),
    (_truncate, "record 2 is missing"),
    (_forged_append, "record 5 fails authentication"),
    (_rewrite_rechain, "record 2 fails authentication"),
])
def test_verify_ledger_names_the_first_bad_record(tmp_path, attack, named):
    led = make_ledger(tmp_path / "study" / "ledger.jsonl")
    attack(led)
    with pytest.raises(LedgerError, match=named):
        led.verify()
    proc = _verify_cli(led.path, tmp_path)
    assert proc.returncode == 2 and named in proc.stderr and "Traceback" not in proc.stderr


def test_head_in_the_study_dir_cannot_roll_back(tmp_path):
    """Restoring an older ledger *and* its older head copy in the study dir is still caught: the
    authoritative head lives with the key."""
    led = make_ledger(tmp_path / "study" / "ledger.jsonl", 2)
    old_lines, old_head = led.path.read_text(), (tmp_path / "study" / "ledger.head").read_text()
    led.append(TrialRecord(trial=2, status="keep", reason="x"))
    led.path.write_text(old_lines)
    (tmp_path / "study" / "ledger.head").write_text(old_head)
    with pytest.raises(LedgerError, match="record 3 is missing"):
        led.verify()


def test_record_size_cap_and_torn_line_repair(tmp_path):
    led = make_ledger(tmp_path / "study" / "ledger.jsonl", 2)
    with pytest.raises(Exception, match="at most|max_length|2000"):
        TrialRecord(trial=5, status="discard", reason="x" * (1 << 20))
    from simgate.autoresearch.records import PromotionRecord

    with pytest.raises(LedgerError, match="over the"):
        led.append(PromotionRecord(status="refused", reason="x", holdout={"blob": "x" * MAX_RECORD_BYTES}))
    assert led.verify() == 3
    with open(led.path, "a") as f:  # a writer killed mid-append
        f.write('{"seq": 3, "prev": "ab')
    with pytest.raises(LedgerError, match="record 3 is torn"):
        led.verify()
    with pytest.raises(LedgerError, match="torn"):
        led.append(TrialRecord(trial=3, status="discard", reason="x"))
    assert "truncated" in led.repair()
    led.append(NoticeRecord(reason="record 3 was torn: truncated"))
    assert led.verify() == 4


def _fake_policy(tmp_path):
    d = tmp_path / "art"
    d.mkdir(exist_ok=True)
    (d / "policy.ts").write_bytes(os.urandom(64))
    (d / "policy.ts.json").write_text("{}")
    return d / "policy.ts"


META = {"env_id": "simgate/PandaReach-v0", "robot": "panda", "holdout": {"success_rate": 0.99, "episodes": 100}}


def test_registry_entries_are_checked_against_the_ledger(tmp_path):
    from simgate.autoresearch.anchor import entry_problem
    from simgate.policies.registry import Registry

    led = make_ledger(tmp_path / "study" / "ledger.jsonl")
    reg = Registry(tmp_path / "reg")
    kept = led.records()[2]  # trial 1, keep (no artifact hash: nothing was judged)
    policy = _fake_policy(tmp_path)
    sha = hashlib.sha256(policy.read_bytes()).hexdigest()
    cite = {"path": str(led.path.resolve()), "key_id": led.key_id(), "seq": kept["seq"], "hash": kept["hash"],
            "trial": 1, "artifact_sha256": sha}
    wrong_ref = reg.promote(policy, {**META, "ledger_entry": {**cite, "hash": "0" * 64}}, name="wrong-ref")
    wrong_hash = reg.promote(policy, {**META, "ledger_entry": cite}, name="wrong-hash")
    manual = reg.promote(policy, {**META, "holdout": {"success_rate": 0.5, "episodes": 10}}, name="manual")
    assert "not in" in entry_problem(reg, reg.metadata(wrong_ref))
    assert "is not the judged artifact" in entry_problem(reg, reg.metadata(wrong_hash))
    assert entry_problem(reg, reg.metadata(manual)) is None
    # a hand-made entry (random weights, "holdout 0.99", its hash recomputed): not attested
    import shutil

    from simgate.policies.registry import _content_hash

    forged = tmp_path / "reg" / "tmpdir"
    shutil.copytree(tmp_path / "reg" / manual, forged)
    (forged / "attestation.json").unlink()
    (forged / "metadata.json").write_text(json.dumps({**META, "name": "forged", "promoted_at": "z"}))
    forged.rename(tmp_path / "reg" / _content_hash(forged))
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-m", "simgate.cli", "policies", "list", "--registry", "reg"], cwd=tmp_path,
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = {ln.split("\t")[1]: ln for ln in out.stdout.splitlines()}
    assert "UNVERIFIED" in lines["forged"] and "0.99" not in lines["forged"]
    assert "UNVERIFIED" in lines["wrong-ref"] and "UNVERIFIED" in lines["wrong-hash"]
    assert "UNVERIFIED" not in lines["manual"] and "holdout 0.50" in lines["manual"]
    proc = _verify_cli(led.path, tmp_path, "--registry", "reg")
    assert proc.returncode == 2 and "registry entry" in proc.stderr
