# shellcheck shell=bash
# shellcheck disable=SC2034 # CLK_TCK, NCPU and the maps are used by the scripts that source this
# Shared helpers for the load benches (sourced by benches/load/run; a later
# scenario such as the burst spill-over bench sources it too).
#
# Invariants: every process a bench starts is launched through `launch`, so it
# is recorded and killed on exit; every port comes from `free_port`; every file
# a bench writes lives under $WORK (a mktemp dir) or the report directory.

BENCH_PIDS=()          # wrappers and servers we started, in start order
USED_PORTS=" "         # ports handed out in this run
declare -A ROOT_PID    # name -> pid of the server process itself (not its wrapper)
declare -A WRAP_PID    # name -> pid we launched (the server, or valgrind running it)
CLK_TCK=$(getconf CLK_TCK)
NCPU=$(nproc)

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }
now() { date +%s.%N; }

# ---------------------------------------------------------------- tools ----

# ensure_tools CMD:PKG... — install the Debian packages of missing commands
# (one `apt-get update`, then `apt-get install -y`).
ensure_tools() {
    local spec missing=()
    for spec in "$@"; do
        command -v "${spec%%:*}" >/dev/null 2>&1 || missing+=("${spec#*:}")
    done
    ((${#missing[@]} == 0)) && return 0
    if [[ ${BENCH_NO_INSTALL:-0} == 1 ]]; then
        die "missing packages: ${missing[*]} (install them or drop --no-install)"
    fi
    local sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null || die "missing packages ${missing[*]} and not root"
        sudo=(sudo)
    fi
    log "installing Debian packages: ${missing[*]}"
    "${sudo[@]}" apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >&2
}

# perf_works — can perf count the raw_syscalls:sys_enter tracepoint of a
# running process (perf stat -p)? Hardware counters are not needed and are
# not available on these machines.
perf_works() {
    command -v perf >/dev/null 2>&1 || return 1
    local busy out
    cat /dev/zero >/dev/null &
    busy=$!
    out=$(perf stat -x, -e raw_syscalls:sys_enter -p "$busy" -- sleep 0.2 2>&1 >/dev/null) || true
    kill "$busy" 2>/dev/null
    wait "$busy" 2>/dev/null || true
    [[ $(awk -F, '/raw_syscalls/ {print $1}' <<<"$out") =~ ^[0-9]+$ ]]
}

# ---------------------------------------------------------------- ports ----

port_bindable() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket,sys
s=socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.close()' "$1" 2>/dev/null
    else
        ! ss -Hltn "sport = :$1" | grep -q .
    fi
}

# free_port VAR — a loopback port that bind() accepts now and not handed out
# earlier in this run (the caller binds it soon after).
free_port() {
    local p i
    for ((i = 0; i < 500; i++)); do
        p=$((20000 + RANDOM % 30000))
        [[ $USED_PORTS == *" $p "* ]] && continue
        if port_bindable "$p"; then
            USED_PORTS+="$p "
            printf -v "$1" '%s' "$p"
            return 0
        fi
    done
    die "no free loopback port"
}

# ------------------------------------------------------------ templates ----

# render TEMPLATE OUT KEY=VALUE... — replace every @KEY@; fail on leftovers.
render() {
    local tpl=$1 out=$2 kv text
    shift 2
    text=$(<"$tpl")
    for kv in "$@"; do
        text=${text//@${kv%%=*}@/${kv#*=}}
    done
    if [[ $text =~ @[A-Z_]+@ ]]; then
        die "unfilled placeholder ${BASH_REMATCH[0]} in $tpl"
    fi
    printf '%s\n' "$text" >"$out"
}

# ------------------------------------------------------------ processes ----

# launch NAME WRAP CMD... — start CMD in the background under WRAP (none or
# callgrind), output to $WORK/NAME.log; sets ROOT_PID[NAME].
launch() {
    local name=$1 wrap=$2 pid
    shift 2
    case $wrap in
    callgrind)
        valgrind --tool=callgrind --callgrind-out-file="$WORK/$name.callgrind" \
            "$@" >"$WORK/$name.log" 2>&1 &
        ;;
    none)
        if [[ -n ${PIN_CPU:-} ]]; then
            taskset -c "$PIN_CPU" "$@" >"$WORK/$name.log" 2>&1 &
        else
            "$@" >"$WORK/$name.log" 2>&1 &
        fi
        ;;
    *) die "unknown wrapper $wrap" ;;
    esac
    pid=$!
    BENCH_PIDS+=("$pid")
    WRAP_PID[$name]=$pid
    ROOT_PID[$name]=$pid
}

# tree_pids PID — PID and all its descendants.
tree_pids() {
    local p
    echo "$1"
    for p in $(pgrep -P "$1" || true); do tree_pids "$p"; done
}

alive() { kill -0 "$1" 2>/dev/null; }

# wait_http NAME URL DEADLINE_S — until URL answers 200, or fail showing the log.
wait_http() {
    local name=$1 url=$2 deadline
    deadline=$(($(date +%s) + $3))
    while (($(date +%s) < deadline)); do
        curl -kfsS -o /dev/null --max-time 2 "$url" 2>/dev/null && return 0
        alive "${ROOT_PID[$name]}" || break
        sleep 0.1
    done
    log "$name not answering $url; its log:"
    tail -20 "$WORK/$name.log" >&2 || true
    return 1
}

# stop NAME [DEADLINE_S] — SIGTERM the server (and its wrapper after it),
# wait for both; SIGKILL what is left at the deadline.
stop() {
    local name=$1 deadline pids p
    deadline=$(($(date +%s) + ${2:-10}))
    pids=$(tree_pids "${ROOT_PID[$name]}")
    kill -TERM "${ROOT_PID[$name]}" 2>/dev/null || true
    for p in $pids ${WRAP_PID[$name]}; do
        while alive "$p" && (($(date +%s) < deadline)); do sleep 0.05; done
        alive "$p" && kill -KILL "$p" 2>/dev/null
    done
    wait "${WRAP_PID[$name]}" 2>/dev/null || true
}

# cleanup — kill everything we started, servers before wrappers.
cleanup() {
    local i p tree all=()
    for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
        alive "${BENCH_PIDS[i]}" || continue
        read -ra tree <<<"$(tree_pids "${BENCH_PIDS[i]}" | tr '\n' ' ')"
        all+=("${tree[@]}")
    done
    ((${#all[@]})) || return 0
    kill -TERM "${all[@]}" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        for p in "${all[@]}"; do alive "$p" && break; done
        alive "$p" || break
        sleep 0.1
    done
    kill -KILL "${all[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
}

# ---------------------------------------------------------- measurement ----

# cpu_ticks PID... — utime+stime (clock ticks) summed over the processes
# (all threads of each, exited threads included).
cpu_ticks() { proc_ticks all "$@"; }

# user_ticks PID... — utime alone: the part of cpu_ticks spent in the
# process's own code rather than in the kernel on its behalf.
user_ticks() { proc_ticks user "$@"; }

# proc_ticks all|user PID... — the sum behind cpu_ticks and user_ticks.
proc_ticks() {
    local which=$1 pid s rest f total=0
    shift
    for pid in "$@"; do
        s=$(<"/proc/$pid/stat") 2>/dev/null || continue
        rest=${s##*) }
        read -ra f <<<"$rest"
        total=$((total + f[11]))
        [[ $which == all ]] && total=$((total + f[12]))
    done
    echo "$total"
}

# machine_busy_ticks — busy jiffies of the whole machine, all CPUs.
machine_busy_ticks() {
    awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat
}

# parse_wrk FILE — "requests rps p50_us p99_us errors" from wrk --latency output.
parse_wrk() {
    awk '
    function us(v) {
        if (v ~ /us$/) return v + 0
        if (v ~ /ms$/) return v * 1000
        if (v ~ /m$/)  return v * 60e6
        if (v ~ /s$/)  return v * 1e6
        return v + 0
    }
    / requests in /          { reqs = $1 }
    /^Requests\/sec:/        { rps = $2 }
    /^ +50%/ && dist         { p50 = us($2) }
    /^ +99%/ && dist         { p99 = us($2) }
    /Latency Distribution/   { dist = 1 }
    /Socket errors:/         { gsub(/,/, ""); errs += $4 + $6 + $8 + $10 }
    /Non-2xx or 3xx/         { errs += $NF }
    END { printf "%d %.0f %.0f %.0f %d\n", reqs, rps, p50, p99, errs }' "$1"
}

# perf_syscalls FILE — the raw_syscalls:sys_enter count from perf stat -x, output.
perf_syscalls() {
    local n
    n=$(awk -F, '/raw_syscalls:sys_enter/ {print $1}' "$1" 2>/dev/null)
    [[ $n =~ ^[0-9]+$ ]] && echo "$n" || echo NA
}

# callgrind_total FILE — total Ir from a callgrind output file, less the
# inclusive Ir of quanta's TSC calibration (the metrics exporter's clock,
# once at start): it loops until its samples settle, so under callgrind its
# count depends on wall time and moved instructions/req by up to ±0.2 k
# between runs of the same binary.
callgrind_total() {
    local total calib
    total=$(awk '/^(summary|totals):/ {print $2; exit}' "$1")
    calib=$(callgrind_annotate --inclusive=yes --threshold=100 "$1" 2>/dev/null |
        awk '/quanta::Calibration::calibrate \[/ {gsub(",", "", $1); print $1; exit}')
    echo $((total - ${calib:-0}))
}
