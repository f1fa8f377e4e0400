#!/usr/bin/env bash
# ferrolens on a real SLURM. Runs the end-to-end test's tiny config (.test/tiny.yaml
# merged with .test/workflow.yaml) twice, in temporary folders:
#   1. locally (snakemake --cores N);
#   2. on a single-node SLURM started here from Debian's packages (munge,
#      slurmctld, slurmd, slurm-client), through `--profile profiles/slurm`;
# then checks that every non-local job ran as a SLURM job (training rules on
# the fake GPU of the `gpu` partition, the others on `cpu`) and that both runs
# wrote the same stores with equal data, and stops every daemon it started by
# its PID (after cancelling leftover jobs). Exit status 0 only when all holds.
#
#   .ci/slurm/test_slurm.sh          as root, with the project's Python active
#
# Missing Debian packages are installed with apt-get, a missing SLURM executor
# plugin with pip (the `slurm` extra). Environment:
#   FERROLENS_SLURM_TIMEOUT  seconds allowed per workflow run (default 1200)
#   FERROLENS_SLURM_RTOL     0 (default): floats must be bit-equal; else allclose rtol
#   FERROLENS_SLURM_KEEP=1   keep the temporary folder (logs, both runs)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/.ci/slurm"
PYTHON=${PYTHON:-python}
TIMEOUT=${FERROLENS_SLURM_TIMEOUT:-1200}
RTOL=${FERROLENS_SLURM_RTOL:-0}
START=$SECONDS
step() { printf '\n== slurm test [%4ds]: %s ==\n' $((SECONDS - START)) "$*"; }
fail() { echo "slurm test FAILED: $*" >&2; exit 1; }

declare -A PID=()  # daemon name -> PID, for stopping exactly what was started here
SMK_PID=""
D=""
ETC_CONF=/etc/slurm/slurm.conf
ETC_CONF_WRITTEN=0

# Processes started by this test that are still alive: their environment holds
# our SLURM_CONF (daemons, job steps, jobs) or their command line our folder.
leftovers() {
    [[ -n "$D" ]] || return 0
    "$PYTHON" - "$D" "$$" <<'EOF'
import os, sys
folder, me = sys.argv[1], {sys.argv[2], str(os.getpid()), str(os.getppid())}
for pid in filter(str.isdigit, os.listdir("/proc")):
    if pid in me:
        continue
    try:
        env = open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace")
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        continue
    if f"SLURM_CONF={folder}/" in env or folder in cmd:
        print(pid, cmd.strip()[:150])
EOF
}

stop_pid() {  # name pid: SIGTERM, then SIGKILL after 20 s
    local name=$1 pid=$2
    kill -0 "$pid" 2>/dev/null || { echo "  $name (PID $pid) had already stopped"; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; echo "  $name (PID $pid) killed"; else
        echo "  $name (PID $pid) stopped"; fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? ids left
    set +e
    trap - EXIT INT TERM
    step "clean up: stop Snakemake, cancel leftover jobs, stop the daemons by PID"
    if [[ -n "$SMK_PID" ]] && kill -0 "$SMK_PID" 2>/dev/null; then
        echo "  interrupting Snakemake (PID $SMK_PID) with SIGINT, so that it cancels its jobs"
        kill -INT "$SMK_PID"
        for _ in $(seq 1 120); do kill -0 "$SMK_PID" 2>/dev/null || break; sleep 0.5; done
        kill -0 "$SMK_PID" 2>/dev/null && kill -KILL "$SMK_PID"
        wait "$SMK_PID" 2>/dev/null
    fi
    if [[ -n "${PID[slurmctld]:-}" ]] && kill -0 "${PID[slurmctld]}" 2>/dev/null; then
        ids=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')
        if [[ -n "${ids// /}" ]]; then
            echo "  cancelling leftover SLURM jobs: $ids"
            # shellcheck disable=SC2086
            scancel $ids
            for _ in $(seq 1 60); do [[ -z "$(squeue -h -o %i 2>/dev/null)" ]] && break; sleep 0.5; done
        fi
    fi
    for name in slurmd slurmctld munged; do
        [[ -n "${PID[$name]:-}" ]] && stop_pid "$name" "${PID[$name]}"
    done
    if [[ $ETC_CONF_WRITTEN == 1 ]]; then rm -f "$ETC_CONF"; echo "  removed $ETC_CONF"; fi
    left=$(leftovers)
    if [[ -n "$left" ]]; then
        echo "  processes of this test still running (stopping them by PID):"
        echo "$left" | while read -r line; do echo "    $line"; done
        for pid in $(echo "$left" | cut -d' ' -f1); do kill -KILL "$pid" 2>/dev/null; done
        rc=1
    fi
    echo "  ps after clean up (munged/slurm processes on this machine):"
    # shellcheck disable=SC2009
    ps -eo pid,args | grep -E '[m]unged|[s]lurm(ctld|d|stepd)' | sed 's/^/    /' || echo "    none"
    if [[ $rc -ne 0 && -n "$D" && -d "$D/log" ]]; then
        for f in "$D"/log/*; do [[ -s "$f" ]] && { echo "--- tail of $f"; tail -n 25 "$f"; }; done
    fi
    if [[ -n "$D" ]]; then
        if [[ "${FERROLENS_SLURM_KEEP:-0}" == 1 ]]; then echo "  kept $D"; else rm -rf "$D"; fi
    fi
    if [[ $rc -eq 0 ]]; then step "PASSED in $((SECONDS - START)) s"; else step "FAILED (exit $rc) after $((SECONDS - START)) s"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------
step "prerequisites: Debian SLURM packages and the Snakemake SLURM executor plugin"
missing=()
for tool in munged slurmctld slurmd sinfo sbatch squeue scancel scontrol; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
    echo "  missing: ${missing[*]}; installing munge slurmctld slurmd slurm-client"
    [[ $EUID -eq 0 ]] || fail "run as root (or install munge slurmctld slurmd slurm-client first)"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends munge slurmctld slurmd slurm-client
fi
if ! "$PYTHON" -c "import snakemake_executor_plugin_slurm" 2>/dev/null; then
    echo "  installing the SLURM executor plugin (the slurm extra of ferrolens)"
    "$PYTHON" -m pip install -q -e "${ROOT}[slurm]"
fi
[[ $EUID -eq 0 ]] || fail "the SLURM daemons are started as root: run as root"
echo "  $(slurmctld -V), plugin $("$PYTHON" -m pip show snakemake-executor-plugin-slurm 2>/dev/null | sed -n 's/^Version: //p'), $("$PYTHON" -m snakemake --version | sed 's/^/snakemake /')"

D=$(mktemp -d "${TMPDIR:-/tmp}/ferrolens-slurm.XXXXXX")
chmod 755 "$D"
mkdir -p "$D"/{etc,state,spool,log,munge,local,slurm}
NCPU=$(nproc)

# ---------------------------------------------------------------------------
step "tiny config (.test/tiny.yaml + .test/workflow.yaml) and the local run (--cores $NCPU)"
"$PYTHON" "$HERE/check.py" tiny-config "$D/local/tiny.yaml"
cp "$D/local/tiny.yaml" "$D/slurm/tiny.yaml"
t0=$SECONDS
if ! (cd "$D/local" && timeout --signal=INT --kill-after=60 "$TIMEOUT" "$PYTHON" -m snakemake \
        -s "$ROOT/Snakefile" --directory "$D/local" --configfile "$D/local/tiny.yaml" --cores "$NCPU" \
        >"$D/local.log" 2>&1); then
    tail -n 60 "$D/local.log"
    fail "the local run failed (not a SLURM problem: the workflow itself)"
fi
echo "  local run: $(grep -c '^rule \|^localrule ' "$D/local.log") jobs in $((SECONDS - t0)) s"

# ---------------------------------------------------------------------------
step "start a single-node SLURM in $D (munged, slurmctld, slurmd)"
read -r CTLD_PORT SLURMD_PORT < <("$PYTHON" -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')
MEM_MB=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.8}' /proc/meminfo)  # most of the memory
export SLURM_CONF="$D/etc/slurm.conf"
sed -e "s|@HOST@|$(hostname -s)|g" -e "s|@DIR@|$D|g" -e "s|@CPUS@|$NCPU|g" -e "s|@MEM_MB@|$MEM_MB|g" \
    -e "s|@CTLD_PORT@|$CTLD_PORT|g" -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" \
    -e "s|@MUNGE_SOCKET@|$D/munge/munge.socket|g" -e "s|@MIN_JOB_AGE@|3600|g" \
    "$HERE/slurm.conf.in" >"$SLURM_CONF"
cp "$HERE/gres.conf.in" "$D/etc/gres.conf"  # found next to slurm.conf
# Inside a job the plugin runs `srun` with every SLURM_* variable but a few
# removed, SLURM_CONF included: job steps read the default /etc/slurm/slurm.conf.
# An identical copy goes there for the duration of the test (never over a
# configuration that this test did not write).
if [[ -e "$ETC_CONF" ]] && ! grep -q "for the ferrolens CI test" "$ETC_CONF"; then
    fail "$ETC_CONF exists and is not this test's: refusing to replace it"
fi
mkdir -p "$(dirname "$ETC_CONF")"
cp "$SLURM_CONF" "$ETC_CONF"
ETC_CONF_WRITTEN=1
echo "  node localhost: $NCPU CPUs, $MEM_MB MB, 1 fake GPU; partitions cpu (default), gpu; ports $CTLD_PORT, $SLURMD_PORT"

dd if=/dev/urandom of="$D/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$D/munge/munge.key"
munged --foreground --force --socket="$D/munge/munge.socket" --key-file="$D/munge/munge.key" \
    --pid-file="$D/munge/munged.pid" --seed-file="$D/munge/munged.seed" --log-file="$D/log/munged.log" \
    >>"$D/log/munged.log" 2>&1 &
PID[munged]=$!
for _ in $(seq 1 40); do munge -n -S "$D/munge/munge.socket" 2>/dev/null | unmunge -S "$D/munge/munge.socket" >/dev/null 2>&1 && break
    kill -0 "${PID[munged]}" 2>/dev/null || fail "munged exited"; sleep 0.25; done
munge -n -S "$D/munge/munge.socket" | unmunge -S "$D/munge/munge.socket" >/dev/null || fail "munge does not work"
echo "  munged PID ${PID[munged]}"

slurmctld -D -i -f "$SLURM_CONF" >>"$D/log/slurmctld.out" 2>&1 &
PID[slurmctld]=$!
echo "  slurmctld PID ${PID[slurmctld]}"
slurmd -D -N localhost -f "$SLURM_CONF" >>"$D/log/slurmd.out" 2>&1 &
PID[slurmd]=$!
echo "  slurmd PID ${PID[slurmd]}"

state=""
for _ in $(seq 1 120); do
    for name in munged slurmctld slurmd; do kill -0 "${PID[$name]}" 2>/dev/null || fail "$name exited (see its log)"; done
    state=$(sinfo -h -n localhost -o %t 2>/dev/null | sort -u | tr '\n' ' ')
    [[ "$state" == "idle " ]] && break
    sleep 0.5
done
[[ "$state" == "idle " ]] || fail "node localhost is not idle after 60 s (state: '$state')"
sinfo | sed 's/^/  /'

# ---------------------------------------------------------------------------
step "GPU request path: a plain job with sbatch --gpus=1 on the gpu partition"
# shellcheck disable=SC2016  # expanded in the job
timeout 120 sbatch --wait --quiet -p gpu --gpus=1 -o "$D/log/gpu_probe.out" \
    --wrap 'echo "job $SLURM_JOB_ID on $SLURMD_NODENAME: CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset} SLURM_GPUS=${SLURM_GPUS-unset}"' \
    || fail "a job asking for a GPU did not run"
sed 's/^/  /' "$D/log/gpu_probe.out"

# ---------------------------------------------------------------------------
step "the same workflow through --profile profiles/slurm (SLURM_CONF=$SLURM_CONF)"
# Test-only settings on top of the profile: partitions for the plugin's
# automatic choice, quick status checks, at most the node's CPUs per job, and
# the SLURM logs of successful jobs kept (see FERROLENS_SLURM_KEEP).
t0=$SECONDS
(cd "$D/slurm" && exec timeout --signal=INT --kill-after=60 "$TIMEOUT" "$PYTHON" -m snakemake \
    -s "$ROOT/Snakefile" --directory "$D/slurm" --configfile "$D/slurm/tiny.yaml" \
    --profile "$ROOT/profiles/slurm" \
    --slurm-partition-config "$HERE/partitions.yaml" \
    --slurm-init-seconds-before-status-checks 5 --seconds-between-status-checks 5 \
    --max-threads "$NCPU" --slurm-keep-successful-logs \
    >"$D/slurm.log" 2>&1) &
SMK_PID=$!
smk_rc=0
wait "$SMK_PID" || smk_rc=$?
SMK_PID=""
grep -E 'Using profile|SLURM run ID|has been submitted with SLURM jobid|Auto-selected partition|Falling back|[Ee]rror|steps \(100%\) done' \
    "$D/slurm.log" | sed 's/^/  /' | head -n 80
if [[ $smk_rc -ne 0 ]]; then
    tail -n 80 "$D/slurm.log"
    find "$D/slurm/.snakemake/slurm_logs" -name '*.log' -exec sh -c 'echo "--- $1"; tail -n 30 "$1"' _ {} \; 2>/dev/null
    [[ $smk_rc -eq 124 ]] && fail "the SLURM run took longer than $TIMEOUT s (interrupted with SIGINT)"
    fail "the SLURM run failed (exit $smk_rc)"
fi
echo "  SLURM run: $((SECONDS - t0)) s"

# ---------------------------------------------------------------------------
step "check: every non-local job ran as a SLURM job, GPU for training"
"$PYTHON" "$HERE/check.py" jobs "$D/slurm.log" || fail "SLURM job check"

step "check: the outputs of the local and the SLURM run are equal"
"$PYTHON" "$HERE/check.py" compare "$D/local" "$D/slurm" --rtol "$RTOL" || fail "outputs differ"
