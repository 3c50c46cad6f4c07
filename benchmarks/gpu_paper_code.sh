#!/bin/bash
# On one lent GPU: a throughput probe, then paper-code RID-ut and VID-ut, seed 0, on all 50,000 training images,
# side by side on the GPU, for as many epochs as the budget allows (the authors' log: 0.658 and 0.398 at epoch 300).
#
#   [PYTHON=python3] bash benchmarks/gpu_paper_code.sh DATA OUT [SECONDS] [DEVICE]
#
# DATA: the CIFAR-10 archive or folder; OUT: where the results go (5 files); SECONDS: the whole budget (default
# 420, of which the probe takes up to 2 minutes); DEVICE: cuda (default), or cpu to try the script on this machine.
# The untrained teachers need no training. The runs are stopped at the budget, so metrics.jsonl holds their finished
# epochs. OUT gets probe.txt (device, throughput table, data load), rid.log, vid.log, and one tar.gz per run folder
# (config, metrics, PID records and PCA features; weights and checkpoints left out).
set -u
data=${1:?usage: gpu_paper_code.sh DATA OUT [SECONDS] [DEVICE]} out=${2:?usage: gpu_paper_code.sh DATA OUT [SECONDS] [DEVICE]}
budget=${3:-420} device=${4:-cuda}
[[ $budget =~ ^[0-9]+$ ]] || { echo "gpu_paper_code.sh: SECONDS must be a whole number of seconds, not $budget" >&2; exit 2; }
[[ $device == cuda || $device == cpu ]] || { echo "gpu_paper_code.sh: DEVICE must be cuda or cpu, not $device" >&2; exit 2; }
[ -e "$data" ] || { echo "gpu_paper_code.sh: no CIFAR-10 at $data: pass the archive or folder as DATA" >&2; exit 2; }
mkdir -p "$out" || exit 2
start=$SECONDS
py=${PYTHON:-python3}  # the device machine's python3 holds PyTorch
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 RIDREPRO_DATA=$data
runs=$(mktemp -d)
trap 'rm -rf "$runs"' EXIT  # the run folders (weights included) live only until OUT has its copies
{
  nvidia-smi -L 2>&1 || true
  $py -c "import torch; print('torch', torch.__version__)"
  # the probe on synthetic images; a failure here must not cost the runs
  timeout 120 $py benchmarks/bench_train.py --device "$device" --steps 20 || echo "bench_train.py exited with $?"
  $py -m ridrepro data  # decode once, so the two runs below share the cache
  # made once here: two runs that both find no teacher would race to make it
  $py -m ridrepro teacher --protocol paper-code --kind ut --seed 0 --runs "$runs" --device "$device" --quiet
  echo "probe and data load: $((SECONDS - start)) s"
} > "$out/probe.txt" 2>&1
left=$((budget - (SECONDS - start) - 20))
[ "$left" -ge 30 ] || { echo "gpu_paper_code.sh: $left s left after the probe; give a larger SECONDS" >> "$out/probe.txt"; exit 1; }
for m in rid vid; do
  timeout "$left" $py -m ridrepro distil --protocol paper-code --method $m --teacher ut --seed 0 --runs "$runs" \
    --device "$device" --quiet > "$out/$m.log" 2>&1 &
done
wait
for m in rid vid; do
  tar -czf "$out/$m-ut-s0.tar.gz" -C "$runs/paper-code" --exclude='*.pt' $m-ut-s0 2>>"$out/$m.log"
done
echo "total: $((SECONDS - start)) s" >> "$out/probe.txt"
