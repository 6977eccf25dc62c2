"""A Python service that spikes: mmap SPIKE_MIB anonymous, touch every page,
hold HOLD_MS, munmap; every MIN_GAP..MAX_GAP s. Serves the heap-dump socket
with a small gzip reply. Prints JSON events (unix ns) to stdout."""
import ctypes, gzip, json, mmap, os, random, socket, sys, threading, time

name = os.environ.get("SPIKY_NAME", "spiky-svc")
ctypes.CDLL(None).prctl(15, name.encode(), 0, 0, 0)
sock_dir = os.environ["SOCK_DIR"]
mib = int(os.environ.get("SPIKE_MIB", "320"))
hold = float(os.environ.get("HOLD_MS", "300")) / 1000
gmin = float(os.environ.get("MIN_GAP", "15"))
gmax = float(os.environ.get("MAX_GAP", "30"))
first = float(os.environ.get("FIRST_AT", "60"))
lock = threading.Lock()
def ev(kind, **kw):
    with lock:
        print(json.dumps(dict(kind=kind, unix_ns=time.time_ns(), **kw)), flush=True)
path = os.path.join(sock_dir, f"heap_dump_{name}.sock")
try: os.unlink(path)
except FileNotFoundError: pass
srv = socket.socket(socket.AF_UNIX); srv.bind(path); srv.listen(4)
reply = gzip.compress(b"not a real profile")
def serve():
    while True:
        c, _ = srv.accept()
        ev("dump-request")
        try:
            c.recv(64); c.sendall(reply)
        finally:
            c.close()
threading.Thread(target=serve, daemon=True).start()
base_mib = int(os.environ.get("BASE_MIB", "0"))
base = bytearray(base_mib << 20)
base[::4096] = b"\x01" * len(range(0, base_mib << 20, 4096))
ev("ready", pid=os.getpid())
time.sleep(first)
n = 0
while True:
    n += 1
    ev("spike-start", n=n)
    m = mmap.mmap(-1, mib << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    for i in range(0, mib << 20, 4096):
        m[i] = 1
    ev("touched", n=n)
    time.sleep(hold)
    ev("munmap", n=n)
    m.close()
    ev("spike-end", n=n)
    time.sleep(random.uniform(gmin, gmax))
