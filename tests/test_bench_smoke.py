"""Benchmarks are not timed tests; CI only checks that they run and write their JSON."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(args, tmp_path):
    out = tmp_path / "b.json"
    proc = subprocess.run([sys.executable, *args, "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text())


def test_sim_throughput_smoke(tmp_path):
    res = _run(["bench/sim_throughput.py", "--seconds", "3", "--rounds", "1"], tmp_path)
    for task in ("Reach", "Push", "PickAndPlace"):
        r = res["tasks"][task]
        assert r["simgate_sps"] > 0 and r["panda_gym_sps"] > 0 and r["ratio"] > 0 and r["simgate_2w_over_1w"] > 0


def test_serial_loop_smoke(tmp_path):
    res = _run(["bench/serial_loop.py", "--seconds", "0.5"], tmp_path)
    for proto in ("feetech", "dynamixel"):
        assert res[proto]["cycles_per_s"] > 10 and res[proto]["wire_only_cycles_per_s"] > res[proto]["cycles_per_s"]


def test_time_to_solve_smoke(tmp_path):
    res = _run(["bench/time_to_solve.py", "--seeds", "1", "--max-steps", "1000", "--eval-every", "500",
                "--eval-episodes", "3"], tmp_path)
    assert {r["side"] for r in res["runs"]} == {"rl_zoo_tqc_her", "simgate"}
    assert all(r["curve"] for r in res["runs"])


def test_research_efficiency_smoke(tmp_path):
    md = tmp_path / "table.md"
    program = tmp_path / "reach-copy.md"  # the built-in reach program, as a file a user may edit
    program.write_text((ROOT / "autoresearch" / "programs" / "reach.md").read_text())
    budget = ["--program", str(program), "--trials", "2", "--trial-steps", "300", "--holdout-episodes", "3",
              "--wall-s", "120", "--repeats", "1", "--workers", "1"]
    res = _run(["bench/research_efficiency.py", *budget, "--markdown", str(md)], tmp_path)
    methods = {"simgate", "random_search", "rl_zoo_style"}
    assert {s["method"] for s in res["studies"]} == methods and all(s["trials"] == 2 for s in res["studies"])
    assert set(res["summary"]) == methods
    for label, m in res["summary"].items():
        assert m["studies"] == 1 and 0.0 <= m["holdout_success"]["mean"] <= 1.0 and m["trials_per_hour_mean"] > 0
        assert (m["false_keeps_caught"] is None) == (label == "rl_zoo_style")
    text = md.read_text()
    assert "--repeats 1" in text.splitlines()[0] and "| method | studies | holdout success mean +- std |" in text

    def resume(json_path, *extra):
        return subprocess.run([sys.executable, "bench/research_efficiency.py", *budget, "--resume", "--json",
                               str(json_path), *extra], cwd=ROOT, capture_output=True, text=True, timeout=120)

    # --resume keeps what is done (nothing left to run here) ...
    again = resume(tmp_path / "b.json")
    assert again.returncode == 0 and "study seed" not in again.stdout, again.stderr[-2000:]
    assert json.loads((tmp_path / "b.json").read_text())["studies"] == res["studies"]
    # ... and refuses a file of another budget, or of the same budget on an edited program
    other = resume(tmp_path / "b.json", "--trial-steps", "600")
    assert other.returncode != 0 and "another program or budget" in other.stderr
    program.write_text(program.read_text().replace("high: 0.003, log: true", "high: 0.01, log: true"))
    edited = resume(tmp_path / "b.json")
    assert edited.returncode != 0 and "another program or budget" in edited.stderr, edited.stderr[-2000:]
    # a file the bench did not write is refused by name, not with a traceback
    (tmp_path / "notes.json").write_text("my notes, not JSON")
    garbage = resume(tmp_path / "notes.json")
    assert garbage.returncode != 0 and "not a table this bench wrote" in garbage.stderr
    assert "Traceback" not in garbage.stderr, garbage.stderr[-2000:]


def test_research_efficiency_summary():
    """The false-keep count and the summary over repeats, on made-up ledger records and studies."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("research_efficiency", ROOT / "bench" / "research_efficiency.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    def rec(trial, status, claimed, parent):
        return {"trial": trial, "status": status, "parent": parent, "reported": {"claimed": claimed}}

    trials = [rec(0, "keep", 0.5, None), rec(1, "discard", 0.6, 0), rec(2, "rejected", 0.9, 0),
              rec(3, "discard", 0.4, 0), rec(4, "keep", 0.7, 0), rec(5, "discard", 0.65, 4), rec(6, "pruned", None, 4)]
    assert bench.false_keeps_caught(trials, 1.0) == 2  # trials 1 and 2 claimed more than incumbent 0
    assert bench.false_keeps_caught(trials, -1.0) == 2  # minimizing: trials 3 and 5

    def study(method, seed, hold, fk):
        return {"method": method, "study_seed": seed, "holdout_success": hold, "claimed": 0.9,
                "false_keeps_caught": fk, "trials_per_hour": 4.0}

    studies = [study("simgate", 0, 0.8, 1), study("simgate", 1, 0.9, 2), study("random_search", 0, 0.5, 0),
               study("random_search", 1, 0.85, 1), study("rl_zoo_style", 0, 0.3, None),
               study("rl_zoo_style", 1, None, None)]
    summ = bench.summarize(studies)
    h = summ["simgate"]["holdout_success"]
    assert h["n"] == 2 and abs(h["mean"] - 0.85) < 1e-9 and h["min"] == 0.8 and h["max"] == 0.9 and h["std"] > 0
    assert summ["simgate"]["false_keeps_caught"] == 3 and summ["rl_zoo_style"]["false_keeps_caught"] is None
    assert summ["rl_zoo_style"]["holdout_success"]["n"] == 1  # a study without a pick is not averaged in
    assert bench.separations(summ) == ["simgate > rl_zoo_style", "random_search > rl_zoo_style"]


def test_gateway_latency_smoke(tmp_path):
    res = _run(["bench/gateway_latency.py", "--seconds", "1", "--readers", "5"], tmp_path)
    for k in ("rest_state", "mcp_read_state", "baseline_trivial_50_clients", "state_50_clients_under_load",
              "ws_stream_100hz_under_load"):
        assert res[k]["n"] > 0 and res[k]["p99_ms"] >= res[k]["p50_ms"] > 0
    assert res["readers_vs_trivial_throughput"] > 0 and set(res["goals"]) >= {"no_stale_refusal"}


def test_ros2_joint_states_smoke(tmp_path):
    res = _run(["bench/ros2_joint_states.py", "--seconds", "1.5", "--rates", "50"], tmp_path)
    row = res["rates"]["50.0"]
    for k in ("driver_sim", "driver_serial_emulated", "bare_rclpy"):
        assert row[k]["rate_hz"] > 0 and row[k]["p50_ms"] > 0


def test_learner_throughput_smoke(tmp_path):
    res = _run(["bench/learner_throughput.py", "--grad-steps", "5", "--fill-steps", "300", "--max-s", "3",
                "--devices", "cpu"], tmp_path)
    assert {r["recipe"].split()[0] for r in res["rows"]} == {"simgate", "rl-zoo"}
    assert all(r["grad_steps_per_s"] > 0 for r in res["rows"])
    # the export check compares the SB3 policy with the torch-only export on 1,000 observations
    assert len(res["export_checks"]) == 2 and all(c["max_abs_action_diff"] <= 1e-5 for c in res["export_checks"])


def test_plot_learning_curve_smoke(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "eval.csv").write_text("10000,100.0,0.20,-40.0\n20000,210.0,0.55,-30.0\n30000,330.0,0.92,-12.0\n")
    out = tmp_path / "curve.png"
    proc = subprocess.run([sys.executable, "bench/plot_learning_curve.py", "--run", str(run), "--out", str(out),
                           "--target", "0.9", "--holdout", "30000:0.95:200", "--holdout", "30000:0.7:200:randomized",
                           "--vline", "20000:randomization on"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.stat().st_size > 10_000 and "best 92%" in proc.stdout


def test_gpu_push_robust_script_runs_its_prelude_then_checks_its_runs(tmp_path):
    """bench/gpu_push_robust.sh on a machine without a GPU: it delegates install/checks to
    bench/gpu_session.sh (skipped here), comes back, and refuses a run it does not know."""
    env = {"PATH": "/usr/bin:/bin", "OUT": str(tmp_path), "SKIP_INSTALL": "1", "SKIP_TESTS": "1"}
    proc = subprocess.run(["bash", "bench/gpu_push_robust.sh", "1", "bogus"], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 2 and "unknown run bogus (robust|nominal)" in proc.stderr, proc.stderr[-2000:]
    assert "== graph tests" not in proc.stdout and list(tmp_path.iterdir()) == []
