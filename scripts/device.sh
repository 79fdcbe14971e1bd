#!/usr/bin/env bash
# Builds, tests and benchmarks ditbench on a GPU machine in one go (LibTorch from the system's
# torch, CUDA for sm_90a). Usage: scripts/device.sh [build|test|bench|all|e2e|cp|seed] [suites...]
# Results and logs go to $OUT (default ./out/device). `e2e` (optional, not part of `all`) replays
# the tiny-shapes end-to-end references on the GPU in bf16 (and float32) against their float32 CPU
# results: $OUT/e2e-cuda-bfloat16.md and $OUT/e2e-cuda-float32.md. `gpu-tests` runs only the tests
# that use a GPU (CUDA, GPU, out-of-memory), a few seconds instead of the whole ctest. `cp` (2 or 4
# GPUs) runs the NCCL tests, the tiny model on 1, 2 and 4 GPUs (as many as the machine has) in
# every mode (suites/gpu-cp-tiny.json, and with FP8 attention and GEMMs under Ulysses and ring,
# suites/gpu-cp-tiny-fp8.json, and with CUDA graphs under Ulysses and ring,
# suites/gpu-cp-tiny-graphs.json; DITBENCH_CP_TINY=0 leaves them out), the tiny model under torchrun
# (up to 4 processes; DITBENCH_CP_TORCHRUN=0 leaves it out) and a rank throwing mid-generation on
# 2 GPUs (rank threads, then torchrun), then the 720p table passes (`cp720`; default 1 GPU,
# Ulysses, ring, USP; other filters as arguments, `none` for no 720p pass), each under a time limit
# with a rank trace in its log. Single-GPU side jobs (DITBENCH_SIDE_JOBS, see side_job) run on the
# other GPUs while the 1-GPU 720p pass runs on GPU 0. `seed` runs the seed's 720p table: 1 GPU,
# FBCache and FBCache + Ulysses 2 (and 4 on 4 GPUs) with the VAE decode, side jobs beside its
# 1-GPU pass (the suite's Ulysses-alone configs are left to a plain run). With `cp none`, GPU 0
# runs the side jobs of DITBENCH_GPU0_JOBS one after another once the 2-GPU work is done.
# `faults` runs only the rank-failure runs of `cp` (DITBENCH_FAULT_REPEATS with rank threads, on
# every pair of GPUs at once with DITBENCH_FAULT_PAIRS=1, then torchrun). `cpprofile` profiles the
# 720p step on 1 and 4 GPUs under torchrun (suites/gpu-hv-720p-cp-profile.json). `cpnccl` runs
# the `cp720` passes (default filters, or the arguments), then their ring and USP passes again
# with DITBENCH_PEER_COPIES=0 into gpu-hv-720p-cp-nccl (K/V blocks over NCCL's kernels instead of
# the copy engines). `cpchunks` runs the `cp720` passes, then the Ulysses passes again with
# DITBENCH_ULYSSES_CHUNKS=2 and 3 into gpu-hv-720p-cp-chunks2 and -chunks3 (pipelined head groups).
# Without DITBENCH_PACK_TO every file stays in $OUT.
# DITBENCH_REUSE_BUILD=1 skips the build when $BUILD already holds ditbench (a second call on the
# same machine).
set -uo pipefail
cd "$(dirname "$0")/.."
mode="${1:-all}"; shift || true
OUT="${OUT:-$PWD/out/device}"; mkdir -p "$OUT"
BUILD="${DITBENCH_BUILD_DIR:-build-gpu}"
export DITBENCH_FIXTURES="${DITBENCH_FIXTURES:-$PWD/.fixtures}"
log() { echo "[device $(date +%H:%M:%S)] $*"; }
# DITBENCH_PACK_TO=DIR: on exit (also after a time limit's SIGTERM), everything in $OUT but frames
# and traces goes into DIR/device-out.tar.gz: one file to bring back instead of many.
if [ -n "${DITBENCH_PACK_TO:-}" ]; then
  pack() {
    tar czf "$DITBENCH_PACK_TO/device-out.tar.gz" -C "$OUT" --exclude='frames' --exclude='traces' \
      --exclude='*.safetensors' . 2>/dev/null
  }
  trap pack EXIT
  trap 'exit 143' TERM
fi

build() {
  if [ "${DITBENCH_REUSE_BUILD:-0}" = 1 ] && [ -x "$BUILD/ditbench" ]; then
    log "reusing $BUILD"; return 0
  fi
  local py; py=$(command -v python3)
  bash scripts/fetch-cutlass.sh || log "no CUTLASS headers: fp8_dynamic runs at::_scaled_mm"
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDITBENCH_PYTHON="$py" \
    -DCMAKE_CUDA_ARCHITECTURES=90a -DDITBENCH_FIXTURES_DIR="$DITBENCH_FIXTURES" >"$OUT/cmake.log" 2>&1 \
    || { tail -40 "$OUT/cmake.log"; return 1; }
  grep "ditbench:" "$OUT/cmake.log"
  cmake --build "$BUILD" -j "$(nproc)" >"$OUT/build.log" 2>&1 || { grep -E "error|Error" "$OUT/build.log" | head -40; return 1; }
  log "built"; "$BUILD/ditbench" --version; "$BUILD/ditbench" list || true
}

test_all() {
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  ctest --test-dir "$BUILD" --output-on-failure -j 4 --timeout 600 >"$OUT/ctest.log" 2>&1
  local rc=$?
  tail -30 "$OUT/ctest.log"
  return $rc
}

# The tests that use a GPU, from every test binary (the rest run in CI on the CPU).
gpu_tests() {
  local rc=0 t
  for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    "$t" --gtest_filter='*Cuda*:*Gpu*:RunnerTest.OutOfMemory*:-NcclCommunicator*' \
      >>"$OUT/gpu-tests.log" 2>&1 || rc=1
  done
  grep -E "^\[ +(OK|FAILED) +\]" "$OUT/gpu-tests.log" | sed -E "s/ \([0-9]+ ms\)//" | head -80
  return $rc
}

bench() {
  # DITBENCH_BENCHES (space-separated names, e.g. "bench_linear") limits the micro-benchmarks run.
  for b in "$BUILD"/bench/bench_*; do
    [ -x "$b" ] || continue
    if [ -n "${DITBENCH_BENCHES:-}" ] && [[ " $DITBENCH_BENCHES " != *" $(basename "$b") "* ]]; then
      continue
    fi
    log "running $(basename "$b")"
    "$b" --benchmark_out="$OUT/$(basename "$b").json" --benchmark_out_format=json 2>&1 | tail -25
  done
  for suite in "$@"; do
    log "running suite $suite"
    "$BUILD/ditbench" run "$suite" --out "$OUT/$(basename "$suite" .json)" 2>&1 | tail -40
    cp "$OUT/$(basename "$suite" .json)/report.md" "$OUT/$(basename "$suite" .json).md" 2>/dev/null
  done
}

e2e() {
  for dtype in bfloat16 float32; do
    log "end-to-end replay, cuda $dtype"
    "$BUILD/ditbench" parity "$DITBENCH_FIXTURES/e2e" --checkpoint assets/tiny-shapes \
      --device cuda --dtype "$dtype" --out "$OUT/e2e-cuda-$dtype.md" >/dev/null || return 1
    cat "$OUT/e2e-cuda-$dtype.md"
  done
}

# Runs a command with its output in LOG; past LIMIT seconds it asks for every thread's stack
# (SIGQUIT: ditbench with DITBENCH_TRACE on writes them into LOG; gdb, where installed, into
# LOG.stacks), then stops the command (SIGTERM, SIGKILL 10 s later).
run_limited() {
  local limit=$1 log=$2; shift 2
  "$@" >"$log" 2>&1 &
  local pid=$! waited=0
  while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt "$limit" ]; do sleep 1; waited=$((waited + 1)); done
  if kill -0 "$pid" 2>/dev/null; then
    log "still running after ${limit}s: call stacks in $log, stopping it"
    kill -QUIT "$pid"; sleep 3
    command -v gdb >/dev/null && timeout 60 gdb -p "$pid" -batch -ex "thread apply all bt 25" >"$log.stacks" 2>&1
    kill -TERM "$pid"; sleep 10; kill -KILL "$pid" 2>/dev/null
  fi
  wait "$pid"
}

# Runs SUITE into $OUT/NAME once per filter (--resume: one results file), each pass limited in
# time (DITBENCH_TRACE on, its log in $OUT/NAME-N.log), then writes the report to $OUT/NAME.md.
suite_passes() {
  local suite=$1 limit=$2; shift 2
  local name n=0; name=$(basename "$suite" .json)
  for filter in "$@"; do
    n=$((n + 1))
    log "suite $name, filter $filter"
    DITBENCH_TRACE=1 run_limited "$limit" "$OUT/$name-$n.log" "$BUILD/ditbench" run "$suite" \
      --out "$OUT/$name" --resume --filter "$filter" --comm-timeout 90 --no-progress
    log "exit $?"; grep -v "^\[trace" "$OUT/$name-$n.log" | tail -3
  done
  "$BUILD/ditbench" report "$OUT/$name/results.jsonl" --out "$OUT/$name.md" >/dev/null 2>&1
  grep -E "^\| .(cache|config)" "$OUT/$name.md" | head -30
}

# A rank that throws at step 3 of a 2-GPU config: recorded as failed, the next config runs
# (DITBENCH_FAULT_REPEATS times with rank threads, default once; logs fault-threads[-N].log; with
# DITBENCH_FAULT_PAIRS=1 on every pair of GPUs at once, pair P's logs fault-threads-pP[-N].log),
# then once under torchrun.
fault_repeats() {  # PREFIX: the repeats on the GPUs this shell sees
  local prefix=$1 repeat suffix
  for repeat in $(seq 1 "${DITBENCH_FAULT_REPEATS:-1}"); do
    suffix=""; [ "$repeat" = 1 ] || suffix="-$repeat"
    DITBENCH_TRACE=1 DITBENCH_INJECT_FAULT=1:3 run_limited 90 "$OUT/$prefix$suffix.log" \
      "$BUILD/ditbench" run suites/gpu-cp-tiny.json --out "$OUT/$prefix$suffix" \
      --filter 'cache=none,gpus=2' --comm-timeout 30 --no-progress
    log "$prefix$suffix: exit $?"; grep -v "^\[trace" "$OUT/$prefix$suffix.log" | tail -4
  done
}
fault_runs() {
  log "rank 1 throws at step 3 (rank threads, then torchrun)"
  local pairs=1 pair pids=()
  [ "${DITBENCH_FAULT_PAIRS:-0}" = 1 ] && pairs=$(($(nvidia-smi -L | wc -l) / 2))
  if [ "$pairs" -le 1 ]; then
    fault_repeats fault-threads
  else
    for pair in $(seq 0 $((pairs - 1))); do
      CUDA_VISIBLE_DEVICES=$((2 * pair)),$((2 * pair + 1)) fault_repeats "fault-threads-p$pair" &
      pids+=($!)
    done
    wait "${pids[@]}"
  fi
  DITBENCH_TRACE=1 DITBENCH_INJECT_FAULT=1:3 run_limited 90 "$OUT/fault-torchrun.log" \
    python3 -m torch.distributed.run --no-python --nproc-per-node 2 "$BUILD/ditbench" run suites/gpu-cp-tiny.json --out "$OUT/fault-torchrun" \
    --filter 'cache=none,gpus=2,cp=ulysses' --comm-timeout 30 --no-progress
  log "exit $?"; grep -v "^\[trace" "$OUT/fault-torchrun.log" | tail -8
}

cp_table() {
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  env | grep -E "^(SLURM|WORLD_SIZE|RANK|LOCAL_RANK|MASTER_|TORCHELASTIC)" || true
  local ngpu; ngpu=$(nvidia-smi -L | wc -l)
  start_side_jobs "${DITBENCH_SIDE_JOBS-gpu_tests bench_attention step480}"
  # The passes of the tiny model on as many GPUs as the machine has (1, 2, 4).
  local tiny_gpus=(gpus=1) n
  for n in 2 4; do [ "$n" -le "$ngpu" ] && tiny_gpus+=("gpus=$n"); done
  local procs=$((ngpu < 4 ? ngpu : 4))
  if [ "${DITBENCH_NCCL_TESTS:-1}" = 1 ]; then
    log "NCCL tests"
    # The disabled ones too (p2p on the world communicator, a throwing rank): they hung once.
    DITBENCH_TRACE=1 run_limited 180 "$OUT/nccl-tests.log" "$BUILD/tests/test_parallel" \
      --gtest_filter='Nccl*' --gtest_also_run_disabled_tests
    echo "NCCL tests exit $?"; grep -E "^\[  (PASSED|FAILED)|FAILED  \]" "$OUT/nccl-tests.log" | tail -6
  fi
  if [ "${DITBENCH_CP_TINY:-1}" = 1 ]; then
    suite_passes suites/gpu-cp-tiny.json 60 "${tiny_gpus[@]}"
    # FP8 attention and FP8 GEMMs under Ulysses and ring.
    suite_passes suites/gpu-cp-tiny-fp8.json 90 "${tiny_gpus[@]}"
    # CUDA graphs of the block segments, collectives inside, against the eager 1-GPU baseline.
    suite_passes suites/gpu-cp-tiny-graphs.json 90 "${tiny_gpus[@]}"
  fi
  # One process per rank, as torchrun starts them (the processes meet through its store).
  if [ "${DITBENCH_CP_TORCHRUN:-1}" = 1 ]; then
    log "tiny model under torchrun, $procs processes"
    DITBENCH_TRACE=1 run_limited 120 "$OUT/torchrun-tiny.log" python3 -m torch.distributed.run \
      --no-python --nproc-per-node "$procs" "$BUILD/ditbench" run suites/gpu-cp-tiny.json \
      --out "$OUT/torchrun-tiny" --filter cache=none --comm-timeout 60 --no-progress
    log "exit $?"; grep -v "^\[trace" "$OUT/torchrun-tiny.log" | tail -4
    "$BUILD/ditbench" report "$OUT/torchrun-tiny/results.jsonl" --out "$OUT/torchrun-tiny.md" >/dev/null 2>&1
  fi
  fault_runs
  [ $# -gt 0 ] || set -- gpus=1 cp=ulysses cp=ring cp=usp
  if [ "$1" = none ]; then  # no 720p pass: GPU 0 takes DITBENCH_GPU0_JOBS (side jobs) instead
    local job
    for job in ${DITBENCH_GPU0_JOBS-}; do
      CUDA_VISIBLE_DEVICES=0 side_job "$job" >"$OUT/side-$job.summary" 2>&1
      log "side job $job (GPU 0)"; tail -25 "$OUT/side-$job.summary"
    done
    finish_side_jobs; return 0
  fi
  local first=$1; shift
  cp720 "$first"
  finish_side_jobs
  [ $# -eq 0 ] || cp720 "$@"
}

# Single-GPU work (JOBS: side_job names) beside the work on GPU 0: one job per GPU from the last
# GPU down to GPU 2, the jobs left over one after another on GPU 1. finish_side_jobs waits for them
# and shows their summaries.
side_pids=(); side_jobs=""
start_side_jobs() {
  side_jobs=$1
  local ngpu gpu job; ngpu=$(nvidia-smi -L | wc -l); gpu=$((ngpu - 1))
  [ "$ngpu" -gt 1 ] || { side_jobs=""; return 0; }
  for job in $side_jobs; do
    if [ "$gpu" -gt 1 ]; then
      (CUDA_VISIBLE_DEVICES=$gpu side_job "$job" >"$OUT/side-$job.summary" 2>&1) &
      side_pids+=($!); gpu=$((gpu - 1))
    else
      local rest=${side_jobs#*"$job"}
      (for j in $job $rest; do CUDA_VISIBLE_DEVICES=1 side_job "$j" >"$OUT/side-$j.summary" 2>&1; done) &
      side_pids+=($!); break
    fi
  done
}
finish_side_jobs() {
  [ ${#side_pids[@]} -eq 0 ] || wait "${side_pids[@]}"
  side_pids=()
  local job
  for job in $side_jobs; do
    log "side job $job"; tail -25 "$OUT/side-$job.summary"
  done
}

# Single-GPU jobs that can run beside a 1-GPU pass on another GPU of the machine.
side_job() {
  case "$1" in
    gpu_tests) gpu_tests ;;
    e2e) e2e ;;
    bench_attention) "$BUILD/bench/bench_attention" --benchmark_out="$OUT/bench_attention.json" \
                       --benchmark_out_format=json 2>&1 | tail -25 ;;
    linear) DITBENCH_BENCHES=bench_linear bench ;;
    kernels) DITBENCH_BENCHES=bench_kernels bench ;;
    engines) DITBENCH_BENCHES=bench_cudnn_engines bench ;;
    step480) DITBENCH_BENCHES=none bench suites/gpu-hv-480p-step.json ;;
    profile480) DITBENCH_BENCHES=none bench suites/gpu-hv-480p-profile.json ;;
    graphs480) DITBENCH_BENCHES=none bench suites/gpu-hv-480p-graphs.json ;;
    fp8quality) DITBENCH_BENCHES=none bench suites/gpu-hv-480p-fp8-quality.json ;;
    models) DITBENCH_BENCHES=none bench suites/gpu-{flux,cogvideox,mochi,wan,wan-1.3b}-step.json ;;
    *) echo "unknown side job $1" ;;
  esac
}

cp720() {
  [ $# -gt 0 ] || set -- gpus=1 cp=ulysses cp=ring cp=usp
  suite_passes suites/gpu-hv-720p-cp.json 170 "$@"
}

# The 720p table, then the layouts with a ring again with the ring's K/V blocks on the copy
# engines (the suite copied under another name: its own results file and report).
cp720_chunks() {
  cp720 "$@"
  local c
  for c in 2 3; do
    cp suites/gpu-hv-720p-cp.json "$OUT/gpu-hv-720p-cp-chunks$c.json"
    DITBENCH_ULYSSES_CHUNKS=$c suite_passes "$OUT/gpu-hv-720p-cp-chunks$c.json" 170 cp=ulysses
  done
}
cp720_nccl() {
  cp720 "$@"
  cp suites/gpu-hv-720p-cp.json "$OUT/gpu-hv-720p-cp-nccl.json"
  DITBENCH_PEER_COPIES=0 suite_passes "$OUT/gpu-hv-720p-cp-nccl.json" 170 cp=ring cp=usp
}

# The kernel profile of the 720p step on 1 GPU and of rank 0 on 4 GPUs (Ulysses 4, ring 4, USP
# 2x2; filters as arguments), a process per GPU under torchrun: CUPTI's activities are
# process-wide, so rank threads are not profiled.
cp_profile() {
  [ $# -gt 0 ] || set -- gpus=1 cp=ulysses cp=ring u=2/r=2
  local filter n=0 procs; procs=$(nvidia-smi -L | wc -l); [ "$procs" -le 4 ] || procs=4
  for filter in "$@"; do
    n=$((n + 1)); log "profile pass $filter, $procs processes"
    DITBENCH_TRACE=1 run_limited 300 "$OUT/cp-profile-$n.log" python3 -m torch.distributed.run \
      --no-python --nproc-per-node "$procs" "$BUILD/ditbench" run suites/gpu-hv-720p-cp-profile.json \
      --out "$OUT/cp-profile" --resume --filter "$filter" --comm-timeout 120 --no-progress
    log "exit $?"; grep -v "^\[trace" "$OUT/cp-profile-$n.log" | tail -3
  done
  "$BUILD/ditbench" report "$OUT/cp-profile/results.jsonl" --out "$OUT/cp-profile.md" >/dev/null 2>&1
  grep -E "^\| " "$OUT/cp-profile.md" | head -80
}

# The first pass (1 GPU) beside DITBENCH_SIDE_JOBS (default none), the multi-GPU ones after them.
seed_table() {
  local ngpu; ngpu=$(nvidia-smi -L | wc -l)
  if [ $# -eq 0 ]; then
    set -- gpus=1 cache=fbcache,gpus=2
    [ "$ngpu" -lt 4 ] || set -- gpus=1 cache=fbcache,gpus=4 cache=fbcache,gpus=2
  fi
  start_side_jobs "${DITBENCH_SIDE_JOBS-}"
  suite_passes suites/gpu-hv-720p-seed.json 400 "$1"
  finish_side_jobs
  shift
  [ $# -eq 0 ] || suite_passes suites/gpu-hv-720p-seed.json 400 "$@"
}

rc=0
case "$mode" in
  build) build || rc=$? ;;
  test) build && test_all || rc=$? ;;
  gpu-tests) build && gpu_tests || rc=$? ;;
  bench) build && bench "$@" || rc=$? ;;
  all) build || exit 1; test_all || rc=$?; bench "$@" ;;
  e2e) build && e2e || rc=$? ;;
  cp) build && cp_table "$@" || rc=$? ;;
  cp720) build && cp720 "$@" || rc=$? ;;
  seed) build && seed_table "$@" || rc=$? ;;
  faults) build && fault_runs || rc=$? ;;
  cpprofile) build && cp_profile "$@" || rc=$? ;;
  cpnccl) build && cp720_nccl "$@" || rc=$? ;;
  cpchunks) build && cp720_chunks "$@" || rc=$? ;;
  *) echo "usage: $0 [build|test|gpu-tests|bench|all|e2e|cp|cp720|seed|faults|cpprofile|cpnccl|cpchunks] [suites or filters...]"; exit 2 ;;
esac
exit $rc
