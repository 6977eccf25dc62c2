#!/bin/bash
# Runs inside the VM (see vm.rs), all scenarios in one boot. Arguments: the
# writable results directory, the integration test binary, the directory
# holding memory-monitor and examples/demo-target, the garage binary, the
# seconds a group may run, then the test groups (name prefixes such as
# `ebpf::`). Writes its findings to the results directory; the host judges
# them (vm/judge.rs):
#   kernel        uname -r
#   boot          seconds from kernel start to this script
#   groups.tsv    per group: prefix, tests matched, exit status, milliseconds
#   group-N.log   libtest's output for group N (0-based)
#   scenario      milliseconds the monitor scenario took; monitor.log, target.log
#   done          written last: the guest finished
set -u
OUT=$1 TESTS=$2 BIN=$3 GARAGE=$4 GROUP_TIMEOUT=$5
shift 5
cut -d' ' -f1 /proc/uptime > "$OUT/boot"
uname -r > "$OUT/kernel"
cd "$OUT" || exit 1

# The rig's parts need loopback (Garage, the Slack stand-in, /metrics) and a
# writable tmpfs for temporary directories and unix sockets: virtme-ng brings
# lo up and overlays the host's /tmp. A fresh tmpfs of our own keeps the
# host's files out of sight; it is mounted on a new directory, never over
# /tmp itself, which may hold this run's results directory and binaries (a
# clone under /tmp). The root filesystem itself is the host's, read-only.
command -v ip > /dev/null && ip link set lo up
GUEST_TMP=/tmp/vm-guest-tmp.$$
mkdir -p "$GUEST_TMP" 2> /dev/null || { GUEST_TMP=/dev/shm/vm-guest-tmp.$$; mkdir -p "$GUEST_TMP"; }
mount -t tmpfs -o mode=1777 tmpfs "$GUEST_TMP"
export TMPDIR=$GUEST_TMP
# Everything a test needs is here (root, eBPF, fexit, cgroup v2): a test
# that would skip for want of it must fail instead, as under CI.
export CI=true RUST_BACKTRACE=1 GARAGE_BIN=$GARAGE
# Emulation on a shared machine is 3-10x slower than the host: the rig's
# waits are stretched to match (testkit/src/patience.rs).
export TESTKIT_TIMEOUT_SCALE=4

# 1. The integration tests, one libtest run per group. libtest filters by
# substring (`oom::` would match `ebpf_oom::`), so the names are selected by
# prefix here and passed with --exact.
: > "$OUT/groups.tsv"
ALL=$("$TESTS" --list 2>/dev/null | sed -n 's/: test$//p')
i=0
for prefix in "$@"; do
    mapfile -t names < <(printf '%s\n' "$ALL" | awk -v p="$prefix" 'index($0, p) == 1')
    log="$OUT/group-$i.log"
    started=$(date +%s%3N)
    if [ "${#names[@]}" -eq 0 ]; then
        rc=0
        echo "no test name starts with $prefix" > "$log"
    else
        # Shortly before a group would be killed, what its processes were
        # doing goes into its log: the host prints a failed group's tail.
        (
            sleep $((GROUP_TIMEOUT - 10))
            {
                echo "==== 10 s before the group's timeout: processes, then test cgroups"
                ps -eo pid,stat,wchan:28,rss,etime,args --sort=start_time | cut -c1-160 | tail -20
                for d in /sys/fs/cgroup/mm-*; do
                    [ -d "$d" ] || continue
                    echo "== $d: current $(cat "$d/memory.current") max $(cat "$d/memory.max")"
                    tr '\n' ' ' < "$d/memory.events"; echo
                    grep -E '^(anon|file|workingset_refault_file|pgmajfault|unevictable) ' "$d/memory.stat" | tr '\n' ' '; echo
                done
            } > "$log.state" 2>&1
        ) &
        watchdog=$!
        # A hung test must not hang the guest: the group fails, the rest runs
        # (SIGKILL 20 s after SIGTERM, for a test stuck where TERM is ignored).
        timeout -k 20 "$GROUP_TIMEOUT" "$TESTS" --exact "${names[@]}" --test-threads=1 --nocapture > "$log" 2>&1
        rc=$?
        kill "$watchdog" 2>/dev/null
        wait "$watchdog" 2>/dev/null
        [ -s "$log.state" ] && cat "$log.state" >> "$log"
    fi
    ended=$(date +%s%3N)
    printf '%s\t%s\t%s\t%s\n' "$prefix" "${#names[@]}" "$rc" $((ended - started)) \
        >> "$OUT/groups.tsv"
    i=$((i + 1))
done

# 2. The monitor in eBPF mode against the demo target: fexit attached to
# mmap/munmap/brk and the wake-ups they give (the host checks the log).
started=$(date +%s%3N)
SOCK=$(mktemp -d)
mkdir -p "$OUT/spool"
MALLOC_CONF=retain:false,dirty_decay_ms:0,muzzy_decay_ms:0 "$BIN/examples/demo-target" \
    --pattern spikes --base-mib 16 --spike-mib 64 --spike-ms 200 --spike-every-ms 1000 \
    --socket-dir "$SOCK" > "$OUT/target.log" 2>&1 &
TARGET=$!
# No S3 here: INITIAL_DELAY keeps the baseline dump (and so any upload) past
# the end of the run.
env BINARY_NAME=demo-target CHECK_INTERVAL=1s HISTORY_WINDOW_SIZE=5 \
    MEMORY_CHANGE_THRESHOLD=16MiB INITIAL_DELAY=10m DUMP_COOLDOWN=30s \
    S3_BUCKET=vm S3_PATH_PREFIX=vm/ POD_NAME=vm HEAP_DUMP_SOCKET_DIR="$SOCK" \
    SPOOL_DIR="$OUT/spool" METRICS_ADDR=127.0.0.1:9464 \
    AWS_ENDPOINT_URL=http://127.0.0.1:1 AWS_REGION=vm AWS_ACCESS_KEY_ID=vm \
    AWS_SECRET_ACCESS_KEY=vm MONITOR_MODE=ebpf RUST_LOG=info,monitor=debug \
    "$BIN/memory-monitor" > "$OUT/monitor.log" 2>&1 &
MONITOR=$!
# Emulated CPUs are slow: wait for the watch to start, then ~8 spikes.
for _ in $(seq 120); do
    grep -q "eBPF watching the target" "$OUT/monitor.log" && break
    sleep 1
done
sleep 8
(exec 3<>/dev/tcp/127.0.0.1/9464 && printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3 && cat <&3) \
    > "$OUT/metrics.txt" 2>&1
kill -9 "$MONITOR" "$TARGET" 2>/dev/null
# Reaped here, so bash does not report the kills on the console.
wait "$MONITOR" "$TARGET" 2>/dev/null
ended=$(date +%s%3N)
echo $((ended - started)) > "$OUT/scenario"
echo done > "$OUT/done"
