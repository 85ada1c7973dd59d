#!/usr/bin/env bash
# Issue 7's GPU measurements in one call of the device tool, for a session that is lent a GPU (none was, so far).
#
#   here, once:  mkdir -p .gpu-data && cp ../shared/data/fashion-mnist/*.gz .gpu-data/    (30 MB, ignored by git)
#   device tool: run(command="bash benchmarks/gpu_checks.sh", carry=[".gpu-data"], timeout_s=560)
#   smoke test here, on CPU, in 1.5 to 3.5 minutes on 2 cores (1 min 24 s alone; 3 min 8 s and 3 min 33 s beside other jobs):  DEVICE=cpu QUICK=1 bash benchmarks/gpu_checks.sh
#
# Uses the machine's own python3 and torch (the package from src/, no install; the training path needs none of the
# studio's packages; the device notes list torch 2.11 there, and the first step prints the version). Each step has its
# own time limit, so one hang cannot eat the device budget: the limits add up to 530 s (and 15 s more to kill a step
# that ignores SIGTERM), inside the 560 s asked of the device tool; what an H100 takes is unmeasured. What comes back under $OUT (4 files): log.txt (with the
# --cuda-graphs parity check: eager twice, then graphed, weight by weight); RESULTS-gpu.md with
# throughput.py's rows (img/s, GFLOP/s, the device's matmul peak, the fraction of it), to copy into
# benchmarks/RESULTS.md; the default run's log.txt and stats.jsonl as default-log.txt and default-stats.jsonl.
set -uo pipefail
export PYTHONPATH=src PYTHONUNBUFFERED=1 COUNTERFEIT_DATA_DIR="${COUNTERFEIT_DATA_DIR:-.gpu-data}"
DEVICE="${DEVICE:-cuda}"
OUT="${OUT:-/tmp/gpu-checks}"
RUNS="$(mktemp -d)"  # run folders stay on the machine: only the files named above come back
mkdir -p "$OUT"
md="$OUT/RESULTS-gpu.md"
small=100 mid=500 big=1000 compiled=2000 default_kimg=600 parity_kimg=4
if [[ "${QUICK:-0}" == 1 ]]; then small=2 mid=2 big=4 compiled=4 default_kimg=4 parity_kimg=1; fi
graphs=1  # --cuda-graphs needs CUDA: the CPU smoke test leaves out its rows and runs the parity check eager only
[[ "$DEVICE" == cuda ]] || graphs=0

step() {  # step SECONDS COMMAND...: run it under a time limit and log its exit status
    local limit=$1
    shift
    echo "=== $* (limit ${limit} s)"
    local t0=$SECONDS
    timeout -k 15 "$limit" "$@"  # -k: a process stuck in a CUDA call never runs its SIGTERM handler
    echo "=== rc=$? after $((SECONDS - t0)) s: $*"
}

tp() {  # tp SECONDS KIMG [--set KEY=VALUE ...]: one throughput.py row for the default dcgan on $DEVICE
    local limit=$1 kimg=$2
    shift 2
    step "$limit" python3 benchmarks/throughput.py --device "$DEVICE" --models dcgan --kimg-dcgan "$kimg" --md "$md" "$@"
}

{
    [[ "$DEVICE" == cuda ]] && nvidia-smi -L
    step 30 python3 -c "import torch; print(torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0))"
    # Whether the graphed step trains what the eager one trains, before its speed is worth anything.
    modes=eager,eager,graphs
    [[ "$graphs" == 1 ]] || modes=eager,eager
    step 50 python3 benchmarks/cuda_graph_parity.py --device "$DEVICE" --kimg "$parity_kimg" --modes "$modes"
    # Throughput and MFU of the default 28x28 dcgan (goal: >= 100,000 img/s on an H100, 50 epochs in under 30 s),
    # eager and with --cuda-graphs, at the default batch of 64 (fp32) and at 1,024 (bf16).
    tp 50 "$small"
    [[ "$graphs" == 1 ]] && tp 50 "$mid" --set cuda_graphs=true
    tp 70 "$big" --set batch_size=1024 --set precision=bf16
    [[ "$graphs" == 1 ]] && tp 50 "$big" --set batch_size=1024 --set precision=bf16 --set cuda_graphs=true
    tp 130 "$compiled" --set batch_size=1024 --set precision=bf16 --set compile=true  # inductor's first compile: ~1 min on 2 CPU cores
    # The whole default run, monitor and checkpoints included.
    step 100 python3 -m counterfeit train --device "$DEVICE" --kimg "$default_kimg" --out "$RUNS/single"
    for f in log.txt stats.jsonl; do cp "$RUNS"/single/*/"$f" "$OUT/default-$f"; done
    tail -n 3 "$OUT/default-log.txt"
    # No torchrun step: with one process torchrun sets WORLD_SIZE=1 and the run never forms a process group, so NCCL
    # stays untested on one GPU (NCCL refuses two ranks on one device). The gloo path is in the test suite.
} 2>&1 | tee "$OUT/log.txt"
