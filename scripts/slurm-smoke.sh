#!/usr/bin/env bash
# End-to-end check that `neural-style batch` runs as a Slurm job array on a
# real (not mocked) single-node Slurm cluster brought up on this machine.
#
#   bash scripts/slurm-smoke.sh
#
# Needs root on Debian/Ubuntu: installs slurm-wlm + munge with apt if sbatch or
# slurmd is missing. Everything else (munge key, slurm.conf, state, logs, the
# generated images, the outputs) lives in one private directory; the daemons
# it starts (munged, slurmctld, slurmd) are stopped on exit, whatever happens.
#
# Environment:
#   BIN          neural-style binary            [$ROOT/target/release/neural-style]
#   TASK_CMD     shell code each array task runs; evaluated by bash inside the
#                task with ROOT, WORK, BIN and SLURM_ARRAY_* set  [the batch run]
#   CHECK        outputs | none: verify the painted files and results   [outputs]
#   TASKS        array size                                                   [2]
#   JOB_TIMEOUT  seconds to wait for the array to finish                    [300]
#   SMOKE_PORT   slurmctld port; slurmd uses the next one                 [16817]
#   KEEP=1       keep the private directory after a successful run
#
# Test the Slurm side alone (no binary needed):
#   TASK_CMD='echo task $SLURM_ARRAY_TASK_ID of $SLURM_ARRAY_TASK_COUNT > $WORK/out/task-$SLURM_ARRAY_TASK_ID.txt' \
#     CHECK=none bash scripts/slurm-smoke.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${BIN:-$ROOT/target/release/neural-style}"
TASKS="${TASKS:-2}"
CHECK="${CHECK:-outputs}"
JOB_TIMEOUT="${JOB_TIMEOUT:-300}"
SMOKE_PORT="${SMOKE_PORT:-16817}"
WEIGHTS="$ROOT/tests/data/tiny_vgg.npz"

# Single quotes: expanded inside each task, where SLURM_ARRAY_TASK_ID is set.
# The binary picks its shard from SLURM_ARRAY_TASK_ID/COUNT/MIN itself.
# shellcheck disable=SC2016
DEFAULT_TASK_CMD='"$BIN" batch --contents "$WORK/contents" --styles "$WORK/styles" --output-dir "$WORK/out" --results "$WORK/results-$SLURM_ARRAY_TASK_ID.jsonl" --size 32 --iterations 2 --weights "$ROOT/tests/data/tiny_vgg.npz"'
TASK_CMD="${TASK_CMD:-$DEFAULT_TASK_CMD}"

T_START=$SECONDS
T_INSTALL=0
WORK=""
PIDS=()          # daemons we started: munged, slurmctld, slurmd
JOB_ID=""
POLICY_RC_CREATED=0

say() { echo "slurm-smoke: $*" >&2; }

show_logs() {
    [[ -n "$WORK" && -d "$WORK/log" ]] || return 0
    # A daemon's .stdout only matters when it died before opening its .log.
    local f
    for f in "$WORK"/log/*; do
        [[ -s "$f" ]] || continue
        [[ "$f" == *.stdout && -s "${f%.stdout}.log" ]] && continue
        echo "----- $f (last 30 lines) -----" >&2
        tail -n 30 "$f" >&2
    done
}

die() {
    say "FAILED: $*"
    show_logs
    exit 1
}

# Job steps (slurmstepd and what it runs) are detached from slurmd, so stopping
# slurmd does not stop them; find them by the private SLURM_CONF they inherit.
kill_job_leftovers() {
    [[ -n "$WORK" ]] || return 0
    local p env comm
    for p in /proc/[0-9]*; do
        p="${p#/proc/}"
        [[ "$p" == "$$" ]] && continue
        env="$( { tr '\0' '\n' < "/proc/$p/environ"; } 2>/dev/null )" || continue
        grep -qxF "SLURM_CONF=$WORK/slurm.conf" <<<"$env" || continue
        comm="$(cat "/proc/$p/comm" 2>/dev/null)" || continue
        if [[ "$comm" == slurmstepd ]] ||
           { [[ -n "$JOB_ID" ]] && grep -qxF "SLURM_ARRAY_JOB_ID=$JOB_ID" <<<"$env"; }; then
            kill -KILL "$p" 2>/dev/null || true
        fi
    done
}

cleanup() {
    local rc=$? i p
    trap - EXIT INT TERM
    if (( POLICY_RC_CREATED )); then rm -f /usr/sbin/policy-rc.d; fi
    if [[ -n "$JOB_ID" ]] && kill -0 "${PIDS[1]:-0}" 2>/dev/null; then
        scancel "$JOB_ID" >/dev/null 2>&1 || true
    fi
    # Stop in reverse start order: slurmd, slurmctld, munged.
    for (( i=${#PIDS[@]}-1; i>=0; i-- )); do
        kill -TERM "${PIDS[i]}" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        for (( i=0; i<50; i++ )); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    kill_job_leftovers
    if [[ -n "$WORK" && -d "$WORK" ]]; then
        if (( rc == 0 )) && [[ "${KEEP:-0}" != 1 ]]; then
            rm -rf "$WORK"
        else
            say "kept $WORK"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'say "FAILED: interrupted"; exit 130' INT
trap 'say "FAILED: terminated"; exit 143' TERM

# ---------------------------------------------------------------- preflight
[[ "$TASKS" =~ ^[1-9][0-9]*$ ]] || die "TASKS must be a positive integer, got '$TASKS'"
[[ "$CHECK" == outputs || "$CHECK" == none ]] || die "CHECK must be 'outputs' or 'none', got '$CHECK'"
command -v python3 >/dev/null || die "python3 not found (needed to make the test images)"
if [[ "$TASK_CMD" == "$DEFAULT_TASK_CMD" ]]; then
    [[ -x "$BIN" ]] || die "no binary at $BIN (cargo build --release, or set BIN=)"
    [[ -f "$WEIGHTS" ]] || die "missing $WEIGHTS"
    "$BIN" batch --help >/dev/null 2>&1 || die "$BIN has no working 'batch' subcommand"
fi

# Mode 711: munged insists that others can traverse to its socket.
WORK="$(mktemp -d "${TMPDIR:-/tmp}/ns-slurm.XXXXXX")"
chmod 711 "$WORK"
mkdir -p "$WORK"/{log,run,state,spool,status,out,contents,styles}
mkdir -m 711 "$WORK/munge"

# ---------------------------------------------------------------- install
if ! command -v sbatch >/dev/null || ! command -v slurmd >/dev/null ||
   ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    (( EUID == 0 )) || die "slurm/munge missing and not root: apt-get install slurm-wlm munge"
    command -v apt-get >/dev/null || die "slurm/munge missing and no apt-get"
    say "installing slurm-wlm and munge (log: $WORK/log/apt.log)"
    t=$SECONDS
    # Stop the packages' init scripts from starting system-wide daemons.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        POLICY_RC_CREATED=1
    fi
    if ! { apt-get update &&
           DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurm-wlm munge
         } > "$WORK/log/apt.log" 2>&1; then
        die "apt-get failed"
    fi
    if (( POLICY_RC_CREATED )); then rm -f /usr/sbin/policy-rc.d; POLICY_RC_CREATED=0; fi
    T_INSTALL=$(( SECONDS - t ))
fi
T_UP0=$SECONDS

# ---------------------------------------------------------------- munge
if ! mungekey --create --keyfile="$WORK/munge/munge.key" >/dev/null 2>&1; then
    dd if=/dev/urandom of="$WORK/munge/munge.key" bs=128 count=1 status=none
fi
chmod 400 "$WORK/munge/munge.key"
SOCK="$WORK/munge/munge.sock"
munged --foreground --socket="$SOCK" --key-file="$WORK/munge/munge.key" \
    --pid-file="$WORK/run/munged.pid" --seed-file="$WORK/munge/munged.seed" \
    > "$WORK/log/munged.log" 2>&1 &
PIDS+=($!)
for (( i=0; i<100; i++ )); do
    munge -n -S "$SOCK" 2>/dev/null | unmunge -S "$SOCK" >/dev/null 2>&1 && break
    kill -0 "${PIDS[0]}" 2>/dev/null || die "munged exited"
    sleep 0.1
done
(( i < 100 )) || die "munged did not answer within 10 s"

# ---------------------------------------------------------------- slurm.conf
HOST="$(hostname -s 2>/dev/null || hostname)"
# Use the topology slurmd detects, so the node does not come up drained for
# "reconfigured socket/core boundaries"; memory a bit below the detected figure.
HW="$(slurmd -C 2>/dev/null | head -n1 || true)"
hw() { sed -n "s/.*\b$1=\([0-9]*\).*/\1/p" <<<"$HW"; }
CPUS="$(hw CPUs)"; CPUS="${CPUS:-$(nproc)}"
MEM="$(hw RealMemory)"
MEM="${MEM:-$(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo)}"
MEM=$(( MEM * 9 / 10 ))
TOPO=""
for k in Boards SocketsPerBoard CoresPerSocket ThreadsPerCore; do
    v="$(hw "$k")"
    if [[ -n "$v" ]]; then TOPO+=" $k=$v"; fi
done
CPT=$(( CPUS / TASKS )); (( CPT >= 1 )) || CPT=1

cat > "$WORK/slurm.conf" <<EOF
# Throwaway single-node cluster for scripts/slurm-smoke.sh
ClusterName=nssmoke
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$SMOKE_PORT
SlurmdPort=$(( SMOKE_PORT + 1 ))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCK
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/run/slurmctld.pid
SlurmdPidFile=$WORK/run/slurmd.pid
SlurmctldLogFile=$WORK/log/slurmctld.log
SlurmdLogFile=$WORK/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MinJobAge=600
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS$TOPO RealMemory=$MEM State=UNKNOWN
PartitionName=smoke Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$WORK/slurm.conf"

# ---------------------------------------------------------------- daemons
slurmctld -D -f "$SLURM_CONF" > "$WORK/log/slurmctld.stdout" 2>&1 &
PIDS+=($!)
slurmd -D -N "$HOST" -f "$SLURM_CONF" > "$WORK/log/slurmd.stdout" 2>&1 &
PIDS+=($!)

state=""
for (( i=0; i<120; i++ )); do
    kill -0 "${PIDS[1]}" 2>/dev/null || die "slurmctld exited"
    kill -0 "${PIDS[2]}" 2>/dev/null || die "slurmd exited"
    state="$(sinfo -h -n "$HOST" -o %T 2>/dev/null || true)"
    [[ "$state" == idle ]] && break
    sleep 0.5
done
if [[ "$state" != idle ]]; then
    sinfo -R >&2 2>/dev/null || true
    die "node $HOST not idle after 60 s (state: '${state:-no answer}')"
fi
T_UP=$(( SECONDS - T_UP0 ))

# ---------------------------------------------------------------- inputs
# Small distinct PNGs, written with the standard library only (no Pillow).
python3 - "$WORK" <<'PY'
import math, os, struct, sys, zlib

def png(path, w, h, px):
    raw = b"".join(b"\0" + bytes(c for x in range(w) for c in px(x, y)) for y in range(h))
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n"
                + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))

W, H = 64, 48
b = lambda v: max(0, min(255, int(v)))
images = {
    "contents/gradient.png": lambda x, y: (b(x * 4), b(y * 5), 90),
    "contents/checker.png": lambda x, y: (230, 230, 40) if (x // 8 + y // 8) % 2 else (20, 60, 160),
    "contents/rings.png": lambda x, y: (b(128 + 127 * math.sin(math.hypot(x - 32, y - 24) / 2)), 40, 140),
    "styles/stripes.png": lambda x, y: (200, 30, 30) if (x + y) // 6 % 2 else (250, 240, 220),
    "styles/waves.png": lambda x, y: (20, b(128 + 120 * math.sin(x / 3 + math.sin(y / 5) * 2)), b(200 - y * 2)),
}
for name, px in images.items():
    png(os.path.join(sys.argv[1], name), W, H, px)
PY

# ---------------------------------------------------------------- job
{
    echo 'set -euo pipefail'
    printf '%s\n' "$TASK_CMD"
} > "$WORK/task.sh"

cat > "$WORK/array.sbatch" <<EOF
#!/bin/bash
#SBATCH --job-name=ns-smoke
#SBATCH --array=0-$(( TASKS - 1 ))
#SBATCH --cpus-per-task=$CPT
#SBATCH --output=$WORK/slurm-%A_%a.out
#SBATCH --time=$(( (JOB_TIMEOUT + 59) / 60 ))
export ROOT=$(printf %q "$ROOT") WORK=$(printf %q "$WORK") BIN=$(printf %q "$BIN")
cd "\$WORK"
echo "task \$SLURM_ARRAY_TASK_ID/\$SLURM_ARRAY_TASK_COUNT on \$(hostname), \$SLURM_CPUS_PER_TASK cpu"
rc=0
bash "\$WORK/task.sh" || rc=\$?
echo "\$rc" > "\$WORK/status/task-\$SLURM_ARRAY_TASK_ID.rc"
exit "\$rc"
EOF

T_JOB0=$SECONDS
JOB_ID="$(sbatch --parsable "$WORK/array.sbatch")" || die "sbatch failed"
JOB_ID="${JOB_ID%%;*}"
say "submitted array job $JOB_ID ($TASKS tasks) to $HOST"

deadline=$(( SECONDS + JOB_TIMEOUT ))
while :; do
    kill -0 "${PIDS[1]}" 2>/dev/null || die "slurmctld died while job $JOB_ID ran"
    queued="$(squeue -h -j "$JOB_ID" -o %i 2>/dev/null)" || die "squeue failed"
    [[ -z "$queued" ]] && break
    (( SECONDS < deadline )) || die "job $JOB_ID still queued/running after $JOB_TIMEOUT s: $queued"
    sleep 0.5
done
T_JOB=$(( SECONDS - T_JOB0 ))

# ---------------------------------------------------------------- checks
fail=0
task_logs() {
    local f
    for f in "$WORK"/slurm-"$JOB_ID"_*.out; do
        [[ -e "$f" ]] || continue
        echo "----- $f -----" >&2
        tail -n 40 "$f" >&2
    done
}
records="$(scontrol show job -o "$JOB_ID" 2>/dev/null)" || die "scontrol show job $JOB_ID failed"
for (( t=0; t<TASKS; t++ )); do
    log="$WORK/slurm-${JOB_ID}_$t.out"
    [[ -s "$log" ]] || { say "task $t: no log $log"; fail=1; }
    rec="$(grep -E "ArrayTaskId=$t( |$)" <<<"$records" || true)"
    st="$(sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' <<<"$rec")"
    ex="$(sed -n 's/.* ExitCode=\([0-9:]*\).*/\1/p' <<<"$rec")"
    [[ "$st" == COMPLETED && "$ex" == 0:0 ]] || { say "task $t: state '${st:-?}' exit '${ex:-?}'"; fail=1; }
    rc="$(cat "$WORK/status/task-$t.rc" 2>/dev/null || echo missing)"
    [[ "$rc" == 0 ]] || { say "task $t: exit marker '$rc'"; fail=1; }
done
(( fail == 0 )) || { task_logs; die "array tasks did not all succeed"; }

if [[ "$CHECK" == outputs ]]; then
    # Every (content, style) pair painted exactly once across the shards, each
    # shard did its share, and every record says ok.
    python3 - "$WORK" "$TASKS" <<'PY' || { task_logs; die "output check failed"; }
import glob, json, os, sys

work, tasks = sys.argv[1], int(sys.argv[2])
stems = lambda d: sorted(os.path.splitext(f)[0] for f in os.listdir(os.path.join(work, d)))
want = sorted(f"{c}__{s}.png" for c in stems("contents") for s in stems("styles"))
errors = []

got = sorted(os.listdir(os.path.join(work, "out")))
if got != want:
    errors.append(f"out/ holds {got}, expected {want}")
for name in set(got) & set(want):
    with open(os.path.join(work, "out", name), "rb") as f:
        if f.read(8) != b"\x89PNG\r\n\x1a\n":
            errors.append(f"out/{name} is not a PNG")

seen = {}
for t in range(tasks):
    path = os.path.join(work, f"results-{t}.jsonl")
    if not os.path.exists(path):
        errors.append(f"missing {os.path.basename(path)}")
        continue
    with open(path) as f:
        recs = [json.loads(line) for line in f if line.strip()]
    share = len(want[t::tasks])
    if len(recs) != share:
        errors.append(f"results-{t}.jsonl has {len(recs)} records, expected {share}")
    for r in recs:
        name = os.path.basename(str(r.get("output", "")))
        seen.setdefault(name, []).append(t)
        if r.get("status") != "ok":
            errors.append(f"results-{t}.jsonl: {name}: status {r.get('status')!r}")
for name in want:
    if len(seen.get(name, [])) != 1:
        errors.append(f"{name} reported by shards {seen.get(name, [])}, expected exactly one")
for name in sorted(set(seen) - set(want)):
    errors.append(f"unexpected result record for {name!r}")

for e in errors:
    print("slurm-smoke: " + e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY
fi

say "install ${T_INSTALL} s, cluster up ${T_UP} s, job ${T_JOB} s"
echo "slurm-smoke: ok ($TASKS tasks, $(( SECONDS - T_START )) s)"
