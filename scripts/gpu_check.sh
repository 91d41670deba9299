#!/usr/bin/env bash
# gpu_check.sh: the GPU checks of lucid and distributed, on a machine with an NVIDIA GPU (about 5-8 minutes
# on one H200 with 16 cores). Stages, each a script in scripts/gpu_check/ with its own log:
#   install .[test,gpu] into a venv -> probe (CuPy, NVRTC, cuBLAS, a lucid kernel) -> pytest -m gpu (in the
#   background) -> every generated CUDA kernel vs the NumPy path, bit for bit -> every optimizer
#   configuration GPU vs CPU for 20 steps, parameters and state -> 2 ranks under mpiexec with device
#   buffers (staging through pinned host memory; again CUDA-aware if the MPI is) incl. sharded
#   checkpoints -> a fused Adam timing against torch's fused CUDA Adam (when a torch with CUDA exists).
#
#   bash scripts/gpu_check.sh [PROJECT_DIR]      # default: the project this script is in
#
# Environment:
#   OUT                       where the logs and summary.txt go (default ./gpu_check_out)
#   LUCID_CHECK_VENV          the venv to create or reuse (default: a temporary one)
#   LUCID_CHECK_SKIP_INSTALL  1: install nothing, run with LUCID_CHECK_PYTHON (default python3), for a machine
#                             that cannot reach PyPI: that Python needs CuPy and lucid's dependencies (NumPy,
#                             numba, safetensors, mpi4py with an MPI, threadpoolctl, tqdm, pytest,
#                             pytest-timeout); the project itself is put on PYTHONPATH
#   LUCID_CHECK_DEVICE        cpu: the dry run, every stage on the CPU (no GPU needed; no pytest, no timing)
#   LUCID_CHECK_QUICK         1: a few cases per stage
#   LUCID_CHECK_NUMEL         the Adam timing's size (default 100000000)
# Exit status 0 when no line of the summary says FAIL.
set -u
T0=$SECONDS
HERE=$(cd "$(dirname "$0")" && pwd)
PROJECT=$(cd "${1:-$HERE/..}" && pwd)
STAGES=$HERE/gpu_check
OUTDIR=$(mkdir -p "${OUT:-$PWD/gpu_check_out}" && cd "${OUT:-$PWD/gpu_check_out}" && pwd)
WORK=$(mktemp -d -t lucid-gpu-check.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
LOG=$OUTDIR/gpu_check.log
SUMMARY=$OUTDIR/summary.txt
: > "$LOG"; : > "$SUMMARY"
export PROJECT PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONPATH=$PROJECT${PYTHONPATH:+:$PYTHONPATH}
export LUCID_CHECK_DEVICE=${LUCID_CHECK_DEVICE:-gpu}
DRY=0; [ "$LUCID_CHECK_DEVICE" = cpu ] && DRY=1
if [ $DRY -eq 0 ]; then  # a GPU run compiles every kernel afresh; the dry run reuses the CPU kernels' cache
    export LUCID_CACHE_DIR=${LUCID_CACHE_DIR:-$WORK/lucid-cache} CUPY_CACHE_DIR=${CUPY_CACHE_DIR:-$WORK/cupy-cache}
fi
[ -f "$PROJECT/pyproject.toml" ] || { echo "no pyproject.toml in $PROJECT (pass the project directory)"; exit 2; }

note() { echo "$*" | tee -a "$SUMMARY"; }
stage() { echo; echo "=== [$((SECONDS - T0))s] $*" | tee -a "$LOG"; }
verdict() { [ "$1" -eq 0 ] && echo PASS || echo FAIL; }
# result NAME PATTERN: the last line of NAME.log matching PATTERN, else its last line (a crash's error)
result() { local line; line=$(grep -E "$2" "$OUTDIR/$1.log" | tail -1); echo "${line:-$(tail -1 "$OUTDIR/$1.log")}" | cut -c1-220; }
# run NAME LIMIT CMD...: output to $OUTDIR/NAME.log (and the main log); returns the command's status
run() {
    local name=$1 limit=$2; shift 2
    timeout -k 10 "$limit" "$@" > "$OUTDIR/$name.log" 2>&1
    local rc=$?
    [ $rc -eq 124 ] && echo "TIMEOUT after ${limit}s" >> "$OUTDIR/$name.log"
    cat "$OUTDIR/$name.log" >> "$LOG"
    return $rc
}

stage "machine"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 || echo "no nvidia-smi";
  echo "cores: $(nproc)"; } | tee -a "$LOG"

# ------------------------------------------------------------------ 1. install
if [ "${LUCID_CHECK_SKIP_INSTALL:-0}" = 1 ]; then
    PY=$(command -v "${LUCID_CHECK_PYTHON:-python3}")
else
    stage "install $PROJECT[test,gpu]"
    VENV=${LUCID_CHECK_VENV:-$WORK/venv}
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" >> "$LOG" 2>&1 || { note "FAIL install: python3 -m venv"; exit 1; }
    if run install 300 "$VENV/bin/python" -m pip install -q -e "$PROJECT[test,gpu]"; then
        note "PASS install: pip install -e .[test,gpu] ($((SECONDS - T0))s)"
    else
        note "FAIL install: pip install -e .[test,gpu] (see install.log)"; tail -5 "$OUTDIR/install.log"; exit 1
    fi
    PY=$VENV/bin/python
fi
MPIEXEC=$(dirname "$PY")/mpiexec; [ -x "$MPIEXEC" ] || MPIEXEC=$(command -v mpiexec || echo mpiexec)
"$PY" -m pip list 2>/dev/null | grep -i -E "^(cupy|numpy|numba|mpi4py|mpich|nvidia|cuda)" >> "$LOG"

# ------------------------------------------------------------------ 2. probe
stage "probe CuPy, NVRTC, cuBLAS and a lucid kernel"
run probe 120 "$PY" "$STAGES/probe.py"; rc=$?
note "$(verdict $rc) probe: $(result probe '^(cupy |dry run|PROBE FAILED)')"
if [ $rc -ne 0 ]; then
    grep -E '^(lucid.gpu_available|nvrtc)' "$OUTDIR/probe.log" | cut -c1-300 | tee -a "$SUMMARY"
    exit 1  # no usable GPU: every later stage would fail the same way
fi

# ------------------------------------------------------------------ 3. the project's GPU tests (background)
PYTEST_PID=""
if [ $DRY -eq 0 ]; then
    stage "pytest -m gpu (background)"
    ( cd "$PROJECT" && timeout -k 10 300 "$PY" -m pytest -m gpu -q -p no:cacheprovider --timeout 240 tests \
        > "$OUTDIR/pytest_gpu.log" 2>&1; echo "rc=$?" >> "$OUTDIR/pytest_gpu.log" ) &
    PYTEST_PID=$!
fi

# ------------------------------------------------------------------ 4. every generated kernel
stage "every generated CUDA kernel vs the NumPy path"
run kernels 200 "$PY" "$STAGES/kernels.py"
note "$(verdict $?) kernels: $(result kernels '^[0-9]+ kernels compiled|^TIMEOUT')"
grep -E '^   ' "$OUTDIR/kernels.log" | head -12 | tee -a "$SUMMARY"

# ------------------------------------------------------------------ 5. optimizer parity GPU vs CPU
stage "optimizer parity GPU vs CPU (20 steps, float32/float64, parameters and state)"
run parity 240 "$PY" "$STAGES/parity.py"
note "$(verdict $?) parity: $(result parity '^parity:|^TIMEOUT')"
grep -E '^(FAIL|NOTE)' "$OUTDIR/parity.log" | head -20 | cut -c1-260 | tee -a "$SUMMARY"

# ------------------------------------------------------------------ 6. two ranks
stage "mpiexec -n 2: DistributedOptimizer with device buffers, LUCID_MPI_CUDA_AWARE=0 (pinned staging)"
LUCID_MPI_CUDA_AWARE=0 run dist_staged 240 "$MPIEXEC" -n 2 "$PY" "$STAGES/dist.py"
note "$(verdict $?) dist (staged): $(result dist_staged '^dist:|^TIMEOUT')"
grep -E '^(world|FAIL)' "$OUTDIR/dist_staged.log" | cut -c1-260 | tee -a "$SUMMARY"
AWARE=$(timeout 60 "$MPIEXEC" -n 1 "$PY" -c "import distributed; print('AWARE', distributed.init().cuda_aware())" \
        2>/dev/null | awk '/^AWARE/ {print $2}')
if [ "$AWARE" = True ] && [ $DRY -eq 0 ]; then
    stage "mpiexec -n 2 again, CUDA-aware"
    run dist_aware 240 "$MPIEXEC" -n 2 "$PY" "$STAGES/dist.py"
    note "$(verdict $?) dist (CUDA-aware): $(result dist_aware '^dist:|^TIMEOUT')"
else
    note "SKIP dist (CUDA-aware): this MPI is not detected as CUDA-aware (cuda_aware() -> ${AWARE:-?}); staging only"
fi

# ------------------------------------------------------------------ 7. the GPU tests' verdict
if [ -n "$PYTEST_PID" ]; then
    stage "waiting for pytest -m gpu"
    wait "$PYTEST_PID"
    cat "$OUTDIR/pytest_gpu.log" >> "$LOG"
    tally=$(grep -E '(passed|failed|error|skipped|deselected)' "$OUTDIR/pytest_gpu.log" | tail -1)
    grep -q '^rc=0$' "$OUTDIR/pytest_gpu.log"
    note "$(verdict $?) pytest -m gpu: ${tally:-see pytest_gpu.log} $(grep -E '^rc=' "$OUTDIR/pytest_gpu.log")"
    grep -E '^(FAILED|ERROR|SKIPPED)' "$OUTDIR/pytest_gpu.log" | head -12 | cut -c1-240 | tee -a "$SUMMARY"
fi

# ------------------------------------------------------------------ 8. timing
if [ $DRY -eq 0 ]; then
    stage "fused Adam timing"
    run timing_lucid 150 "$PY" "$STAGES/timing.py"; rc=$?
    note "$([ $rc -eq 0 ] && echo TIME || echo FAIL) $(result timing_lucid '^lucid Adam|^TIMEOUT')"
    TORCHPY=""
    for candidate in "$PY" $(command -v -a python3 python 2>/dev/null); do
        if timeout 90 "$candidate" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" > /dev/null 2>&1; then
            TORCHPY=$candidate; break
        fi
    done
    if [ -n "$TORCHPY" ]; then
        run timing_torch 150 "$TORCHPY" "$STAGES/timing.py" --torch
        note "TIME $(result timing_torch '^torch|^TIMEOUT') [$TORCHPY]"
    else
        note "SKIP torch fused Adam: no Python here has torch with CUDA"
    fi
fi

# ------------------------------------------------------------------ summary
echo; echo "================ lucid GPU check ($LUCID_CHECK_DEVICE): $((SECONDS - T0))s; logs in $OUTDIR ================"
cat "$SUMMARY"
FAILS=$(grep -c '^FAIL' "$SUMMARY")
echo "lines failing: $FAILS"
[ "$FAILS" -eq 0 ]
