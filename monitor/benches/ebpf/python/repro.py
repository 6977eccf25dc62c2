"""Reproduction of the short-spike miss (docs/benchmarks.md, "Why eBPF missed").

Run the release monitor (eBPF, 2 s, window 20) against spiky.py for RUN_S
seconds (as root, storeless: uploads fail and are retried, captures
succeed); then `python3 analyze.py <dir>...` lists every spike and, for a
miss, the monitor's lines around it. Env: RUN_S, TAG, BASE_MIB, SPIKE_MIB,
HOLD_MS, MIN_GAP, MAX_GAP, FIRST_AT, MONITOR."""
import json, os, subprocess, sys, tempfile, time, datetime, signal
run_s = float(os.environ.get("RUN_S", "360"))
tag = os.environ.get("TAG", "r")
here = os.path.dirname(os.path.abspath(__file__))
target_dir = os.environ.get("CARGO_TARGET_DIR", os.path.join(here, "../../../../target"))
mon = os.environ.get("MONITOR", os.path.join(target_dir, "release/memory-monitor"))
d = tempfile.mkdtemp(prefix=f"repro-{tag}-")
name = f"spiky-{tag}"[:15]
svc_out = open(f"{d}/svc.jsonl", "w")
svc = subprocess.Popen([sys.executable, os.path.join(here, "spiky.py")], env=dict(os.environ, SOCK_DIR=d, SPIKY_NAME=name, FIRST_AT=os.environ.get("FIRST_AT","50")), stdout=svc_out)
env = dict(PATH=os.environ["PATH"], BINARY_NAME=name, CHECK_INTERVAL="2s", HISTORY_WINDOW_SIZE="20",
  INITIAL_DELAY="1s", SPIKE_MULTIPLIER="1.5", MEMORY_CHANGE_THRESHOLD="64GiB", S3_BUCKET="b", S3_PATH_PREFIX="r/", DUMP_COOLDOWN="10m", POD_NAME=name,
  HEAP_DUMP_SOCKET_DIR=d, SPOOL_DIR=f"{d}/spool", METRICS_ADDR=os.environ.get("METRICS","off"), MONITOR_MODE="ebpf",
  RUST_LOG=os.environ.get("RUST_LOG_SET","info,monitor=debug"), LOG_FORMAT="json",
  AWS_ENDPOINT_URL="http://127.0.0.1:9", AWS_REGION="us-east-1", AWS_ACCESS_KEY_ID="t", AWS_SECRET_ACCESS_KEY="t",
  AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null", S3_FORCE_PATH_STYLE="true")
mon_log = open(f"{d}/monitor.jsonl", "w")
m = subprocess.Popen([mon], env=env, stderr=mon_log, stdout=subprocess.DEVNULL)
loads = [open("/proc/loadavg").read().split()[0]]
t0 = time.time()
while time.time() - t0 < run_s:
    time.sleep(30); loads.append(open("/proc/loadavg").read().split()[0])
m.send_signal(signal.SIGTERM); svc.kill(); m.wait(); svc.wait()
print(f"dir {d} loads {' '.join(loads)}")
