#!/bin/bash
# Runs inside the `cargo xtask vm` guest (see vm.rs). Arguments: the
# writable results directory, the integration test binary, the directory
# holding memory-monitor and examples/demo-target. Writes its findings
# there; the host judges them.
set -u
OUT=$1 TESTS=$2 BIN=$3
uname -r > "$OUT/kernel"
cd "$OUT" || exit 1

# 1. The eBPF tests that need fexit, against this kernel.
timeout 180 "$TESTS" --exact ebpf::fexit_reports_the_syscall_results \
    ebpf::programs_load_and_attach --nocapture --test-threads=1 > "$OUT/tests.log" 2>&1
echo "rc=$?" >> "$OUT/tests.log"

# 2. The monitor in eBPF mode against the demo target. Unix sockets cannot
# live on the 9p root, hence a tmpfs directory for the heap-dump socket.
SOCK=$(mktemp -d /dev/shm/sock.XXXXXX)
mkdir -p "$OUT/spool"
MALLOC_CONF=retain:false,dirty_decay_ms:0,muzzy_decay_ms:0 "$BIN/examples/demo-target" \
    --pattern spikes --base-mib 16 --spike-mib 64 --spike-ms 200 --spike-every-ms 1000 \
    --socket-dir "$SOCK" > "$OUT/target.log" 2>&1 &
TARGET=$!
# No S3 in the VM: uploads would fail, and INITIAL_DELAY keeps the baseline
# dump (and so any upload) past the end of the run anyway.
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
echo done > "$OUT/done"
