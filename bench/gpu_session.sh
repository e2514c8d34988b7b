#!/usr/bin/env bash
# One prepared GPU check for the twin (issue 15), run from the repository root on the GPU machine
# (Python 3.12, torch with CUDA, no pybullet). It needs, carried beside the tree:
#   .whl/      simgate's wheel (pip wheel --no-deps .) and pydantic, pydantic_core, annotated_types,
#              typing_inspection, typing_extensions, gymnasium, farama_notifications for cp312
#   .gpu/site/ pybullet_data/franka_panda/panda.urdf and xarm/xarm6_with_gripper.urdf (+ an __init__ with
#              getDataPath): the URDFs only (the registry loads every built-in robot)
# Writes to $OUT: the throughput JSON and Push training snapshots, judged afterwards on a machine
# with PyBullet: python bench/twin_gpu_push.py judge $OUT/gpu_push_<name>.pt --holdout 200
# SKIP_THROUGHPUT=1 leaves the throughput benchmark out, SKIP_TESTS=1 the graph tests; with no
# trainings and SKIP_THROUGHPUT it only installs and checks (bench/gpu_push_robust.sh starts so).
# Usage: bench/gpu_session.sh TRAIN_WALL_S "name:key=v,key=v" ["name:..."]   (trainings first, then throughput)
set -u
train_wall_s=${1:-200}; shift || true
[ -n "${SKIP_INSTALL:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/.gpu/site PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
[ -n "${SKIP_TESTS:-}" ] || { echo "== graph tests"; timeout 90 python3 -P -m pytest -p no:simgate -p no:cacheprovider --noconftest -o addopts="" -q tests/test_twin_graph.py tests/test_ppo_graph.py 2>&1 | tail -15; }  # -P: the repo root is not on sys.path (its simgate/ is not the installed package)
for spec in "$@"; do
  name=${spec%%:*}; sets=()
  IFS=, read -ra kvs <<< "${spec#*:}"
  for kv in "${kvs[@]}"; do sets+=(--set "$kv"); done
  echo "== train $name ${kvs[*]}"
  timeout $((train_wall_s + 90)) python3 bench/twin_gpu_push.py train --out "$OUT/gpu_push_$name.pt" \
    --max-wall-s "$train_wall_s" --snapshot-every-s 10 "${sets[@]}" 2>&1 | tail -40
done
[ -z "${SKIP_THROUGHPUT:-}" ] || exit 0
echo "== throughput"
timeout 230 python3 bench/twin_throughput.py --envs 1,256,4096,65536 --cpu-envs 4096 --compile-envs 65536 --json "$OUT/twin_throughput_gpu.json" 2>&1 | tail -60
