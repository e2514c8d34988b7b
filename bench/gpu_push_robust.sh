#!/usr/bin/env bash
# Push trained under the randomization preset on a GPU, against the base recipe trained nominally;
# both are judged afterwards in PyBullet *under the preset* (the push-robust program's metric).
# Same carried files as bench/gpu_session.sh (.whl/ and .gpu/site/, with the xArm6 URDF beside the
# Panda's: the registry loads every built-in robot). Writes $OUT/gpu_push_<which>.pt; judge here:
#   python bench/twin_gpu_push.py judge $OUT/gpu_push_robust.pt --holdout 200 --bar 0.6 --skip 3 --json J
# Usage: bench/gpu_push_robust.sh TRAIN_WALL_S robust|nominal ...   (SKIP_TESTS=1: no graph tests first)
# "robust" = push-robust v4's promoted trial 5 (docs/push_robust_study_v4/report.md): trained under the
# preset with friction up to 1.22, lr 1.25e-3, ent_coef 0.005, clip 0.18, gamma 0.971, box speed 0.45 m/s.
set -u
train_wall_s=${1:-240}; shift || true
SKIP_THROUGHPUT=1 bench/gpu_session.sh "$train_wall_s" || exit 1  # install, GPU facts, graph tests (SKIP_TESTS=1: none)
export PYTHONPATH=/tmp/site:$PWD/.gpu/site PYTHONUNBUFFERED=1
preset_friction_122='{"link_mass_scale": [0.8, 1.2], "lateral_friction": [0.6, 1.2219105039259726], "joint_damping": [0.0, 0.5], "object_size_scale": [0.9, 1.1], "object_mass_scale": [0.5, 1.5], "action_latency_steps": [0.0, 1.0], "action_noise_std": [0.0, 0.05], "obs_noise_std": [0.0, 0.002], "control_period_jitter": [0.0, 0.1]}'
for which in "$@"; do
  case "$which" in
    robust) sets=(--set "train_randomization=$preset_friction_122" --set learning_rate=0.0012473195384681507
                  --set ent_coef=0.004959980977110532 --set clip_range=0.1783075808546541 --set gamma=0.9706569040513003
                  --set push_speed_limit_m_s=0.4473140109680434) ;;
    nominal) sets=(--set train_randomization=false) ;;  # the base recipe, trained without randomization
    *) echo "unknown run $which (robust|nominal)" >&2; exit 2 ;;
  esac
  echo "== train $which"
  timeout $((train_wall_s + 90)) python3 bench/twin_gpu_push.py train --out "$OUT/gpu_push_$which.pt" \
    --max-wall-s "$train_wall_s" --snapshot-every-s 20 --set randomization=preset --set total_steps=500000000 \
    --set compile_twin=false "${sets[@]}" 2>&1 | tail -20
done
