"""The allow-list check every artifact from someone else passes before anything in it runs
(policies/export.py ``check_torchscript``; the research gate and ``Registry.load`` both use it),
and the worker-writable file tricks the artifact store refuses."""

import io
import json
import os
import threading

import pytest
import torch

from simgate.policies.export import UnsafeArtifact, check_torchscript, load_checked_policy, read_regular_file

LAYOUT = {"obs_keys": ["observation", "desired_goal"], "obs_sizes": [3, 3], "action_dim": 3}


@pytest.fixture(autouse=True)
def _keys(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMGATE_KEY_DIR", str(tmp_path / "keys"))


def _bytes(mod) -> bytes:
    buf = io.BytesIO()
    torch.jit.save(mod, buf)
    return buf.getvalue()


def _honest():
    """What export_torchscript writes: a traced MLP actor with normalization and a squashed head."""
    from simgate.policies.export import ExportedActor

    body = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16), torch.nn.ReLU())
    actor = ExportedActor(body, torch.nn.Linear(16, 3), True, torch.zeros(6), torch.ones(6), 10.0,
                          -torch.ones(3), torch.ones(3)).eval()
    return torch.jit.trace(actor, torch.zeros(1, 6))


class Leak(torch.nn.Module):  # the attack: read the HMAC key inside the judge, raise it as the message
    def __init__(self, p: str) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = torch.from_file(self.p, False, 32, dtype=torch.uint8)
        raise RuntimeError("LEAK:" + str(k.sum().item()))


class Spin(torch.nn.Module):  # hangs whoever runs it
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        while True:
            x = x + 1.0
        return x[:, :3]


class Branch(torch.nn.Module):  # behaves differently depending on a file the worker can write
    def __init__(self, p: str) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flag = torch.from_file(self.p, False, 1, dtype=torch.uint8)
        if bool(flag[0] == 49):
            return -x[:, :3]
        return x[:, :3]


class OnLoad(torch.nn.Module):  # code that torch.jit.load itself would run
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.zeros(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :3] + self.w

    @torch.jit.export
    def __getstate__(self) -> tuple[torch.Tensor, bool]:
        return (self.w, self.training)

    @torch.jit.export
    def __setstate__(self, s: tuple[torch.Tensor, bool]) -> None:
        self.w = s[0]
        self.training = s[1]
        raise RuntimeError("ran on load")


class Reversed(torch.nn.Module):  # a scripted wrapper of an honest actor (tests/test_check.py makes one)
    def __init__(self, a) -> None:
        super().__init__()
        self.a = a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -self.a(x)


def test_honest_exports_pass():
    check_torchscript(_bytes(_honest()), LAYOUT)
    check_torchscript(_bytes(torch.jit.script(Reversed(_honest()))), LAYOUT)


def test_real_sb3_exports_pass(tmp_path):
    from stable_baselines3 import PPO, SAC

    from simgate.policies.export import export_torchscript
    from simgate.sim import make

    env = make("simgate/PandaReach-v0")
    for algo in (SAC, PPO):
        out = tmp_path / algo.__name__ / "policy.ts"
        export_torchscript(algo("MultiInputPolicy", env), out)
        pol = load_checked_policy(out)
        assert pol.act({k: [0.0] * n for k, n in zip(pol.keys, pol.layout["obs_sizes"], strict=True)}).shape == (3,)
    env.close()


@pytest.mark.parametrize("mod, named", [
    (lambda tmp: Leak(str(tmp / "keys" / "x.key")), "aten::from_file"),
    (lambda tmp: Leak(str(tmp / "keys" / "x.key")), "prim::RaiseException"),
    (lambda tmp: Spin(), "prim::Loop"),
    (lambda tmp: Branch(str(tmp / "flag")), "prim::If"),
    (lambda tmp: OnLoad(), "__setstate__"),
])
def test_artifact_code_is_refused_before_it_runs(tmp_path, mod, named):
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "x.key").write_bytes(os.urandom(32))
    (tmp_path / "flag").write_bytes(b"1")
    data = _bytes(torch.jit.script(mod(tmp_path)))
    done = threading.Event()
    err: list[BaseException] = []

    def go():
        try:
            check_torchscript(data, LAYOUT)
        except BaseException as exc:  # noqa: BLE001
            err.append(exc)
        done.set()

    threading.Thread(target=go, daemon=True).start()
    assert done.wait(60), "the check ran the artifact (hung)"
    assert err and isinstance(err[0], UnsafeArtifact), err
    assert named in str(err[0]) and "LEAK" not in str(err[0]) and "ran on load" not in str(err[0])


def test_bad_output_and_layout_refused():
    class Wide(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    with pytest.raises(UnsafeArtifact, match="finite"):
        check_torchscript(_bytes(torch.jit.script(Wide())), LAYOUT)
    with pytest.raises(UnsafeArtifact, match="layout"):
        check_torchscript(_bytes(_honest()), {"obs_keys": "x"})
    with pytest.raises(UnsafeArtifact, match="TorchScript"):
        check_torchscript(b"not a zip", LAYOUT)


def test_registry_load_applies_the_same_check(tmp_path):
    from simgate.policies.registry import Registry, RegistryError

    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "x.key").write_bytes(os.urandom(32))
    src = tmp_path / "src"
    src.mkdir()
    (src / "policy.ts").write_bytes(_bytes(torch.jit.script(Leak(str(tmp_path / "keys" / "x.key")))))
    (src / "policy.ts.json").write_text(json.dumps(LAYOUT))
    reg = Registry(tmp_path / "reg")
    meta = {"env_id": "simgate/PandaReach-v0", "robot": "panda", "holdout": {"success_rate": 1.0, "episodes": 10}}
    bad = reg.promote(src / "policy.ts", meta)
    with pytest.raises(RegistryError, match="aten::from_file"):
        reg.load(bad)
    (src / "policy.ts").write_bytes(_bytes(_honest()))
    good = reg.promote(src / "policy.ts", meta, name="good")
    pol, m = reg.load(good)
    assert m["id"] == good and pol.act({"observation": [0.0] * 3, "desired_goal": [0.0] * 3}).shape == (3,)


# ---- files a worker can write --------------------------------------------------------------------
def _fifo_and_links(tmp_path):
    d = tmp_path / "trial"
    d.mkdir()
    os.mkfifo(d / "fifo")
    os.symlink("/dev/zero", d / "zero")
    os.symlink(d / "real", d / "link")
    (d / "real").write_bytes(b"x")
    return d


def test_read_regular_file_refuses_fifo_symlink_device(tmp_path):
    d = _fifo_and_links(tmp_path)
    for name, why in (("fifo", "not a regular file"), ("zero", "symlink"), ("link", "symlink")):
        with pytest.raises(UnsafeArtifact, match=why):
            read_regular_file(d / name)
    with pytest.raises(UnsafeArtifact, match="not a regular file"):
        read_regular_file("/dev/zero")
    with pytest.raises(UnsafeArtifact, match="cap"):
        read_regular_file(d / "real", cap=0)
    assert read_regular_file(d / "real") == b"x"


def test_store_refuses_fifo_policy_and_heals_planted_entries(tmp_path):
    from simgate.autoresearch.store import ArtifactStore, StoreError, sha256_bytes

    store = ArtifactStore(tmp_path / "study" / "store")
    t = tmp_path / "study" / "trials" / "0000"
    t.mkdir(parents=True)
    os.mkfifo(t / "policy.ts")  # st_size 0, then read_bytes would block forever
    (t / "policy.ts.json").write_text(json.dumps(LAYOUT))
    with pytest.raises(StoreError, match="not a regular file"):
        store.ingest(t / "policy.ts")
    os.unlink(t / "policy.ts")
    os.symlink("/dev/zero", t / "policy.ts")
    with pytest.raises(StoreError, match="symlink"):
        store.ingest(t / "policy.ts")
    os.unlink(t / "policy.ts")

    data = _bytes(_honest())
    (t / "policy.ts").write_bytes(data)
    sha = sha256_bytes(data)
    planted = store.root / sha  # pre-planted by a worker who knows another worker's artifact hash
    planted.mkdir(parents=True)
    (planted / "policy.ts").write_bytes(b"junk")
    (planted / "policy.ts.json").write_text("{}")
    got, lsha = store.ingest(t / "policy.ts")
    assert got == sha and (planted / "policy.ts").read_bytes() == data
    assert any("pre-planted" in n for n in store.take_notes())
    # the study store entry corrupted after the verdict: restored from the trusted mirror
    (planted / "policy.ts").write_bytes(data + b"x")
    out = store.checkout(sha, lsha, tmp_path / "private")
    assert out.read_bytes() == data and (planted / "policy.ts").read_bytes() == data
    assert any("restored from the trusted mirror" in n for n in store.take_notes())
    assert (tmp_path / "keys" / "store" / sha / "policy.ts").read_bytes() == data
    # both copies changed: refused, naming the judged hash
    (tmp_path / "keys" / "store" / sha / "policy.ts").write_bytes(b"y")
    (planted / "policy.ts").write_bytes(b"z")
    with pytest.raises(StoreError, match="no trusted copy"):
        store.checkout(sha, lsha, tmp_path / "private2")
