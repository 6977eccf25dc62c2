"""Per spike of repro.py runs: eligible (after the cooldown, peak above the
limit), dumped or missed, and for a miss the monitor's lines around it
(V=1: for every eligible spike)."""
import json, sys, datetime
import os; VERBOSE = os.environ.get("V"); COOLDOWN = 40e9; MARGIN = 250e6
def ts(s):
    return int(datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1e9)
tot = dict(spikes=0, eligible=0, caught=0)
for d in sys.argv[1:]:
    svc = [json.loads(l) for l in open(f"{d}/svc.jsonl") if l.startswith("{")]
    mon = []
    for l in open(f"{d}/monitor.jsonl"):
        try:
            j = json.loads(l)
        except Exception:
            continue
        j["t"] = ts(j["timestamp"]); mon.append(j)
    captured = [j["t"] for j in mon if j.get("message") == "heap dump captured" and j.get("reason") == "spike"]
    armed = min([j["t"] for j in mon if "baseline P50 set" in j.get("message", "")] or [1 << 62])
    dumps = [e["unix_ns"] for e in svc if e["kind"] == "dump-request"]
    spikes = {}
    for e in svc:
        if "n" in e: spikes.setdefault(e["n"], {})[e["kind"]] = e["unix_ns"]
    print(f"== {d}")
    for n, s in sorted(spikes.items()):
        if "spike-end" not in s: continue
        st, en = s["spike-start"], s["spike-end"]
        prev = [c for c in captured if c < st]
        elig = st > armed and (not prev or st > prev[-1] + COOLDOWN)
        reads = [j for j in mon if st <= j["t"] <= en + MARGIN and j.get("message") in ("tick", "event sample")]
        base_reads = [j for j in mon if j["t"] < st and j.get("message") == "tick"]
        p95s = [int(j["p95"][5:-1]) for j in base_reads[-1:] + reads if j.get("p95", "None") != "None"]
        limit = max(p95s) * 1.5 if p95s else 0
        peak = (int(base_reads[-1]["rss_anon"]) if base_reads else 0) + (int(os.environ.get("SPIKE_MIB", "320")) << 20)
        hi = max([int(j["rss_anon"]) for j in reads] or [0])
        if elig and peak <= limit:
            elig = False; tot["raised"] = tot.get("raised", 0) + 1
        why = ""
        if elig and hi <= limit:
            why = f"highest read {hi/1048576:.1f} MiB <= limit {limit/1048576:.1f} MiB (peak ~{peak/1048576:.1f}) after {len(reads)} reads"
        dump = [x for x in dumps if st <= x <= en + MARGIN]
        tot["spikes"] += 1
        tot["eligible"] += elig
        tot["caught"] += bool(elig and dump)
        lat = f"{(dump[0]-st)/1e6:.0f} ms" if dump else "-"
        print(f" spike {n}: touch {(s['touched']-st)/1e6:.0f} ms, held {(s['munmap']-s['touched'])/1e6:.0f} ms, "
              f"{'eligible' if elig else 'not eligible'}, {'caught' if dump else 'MISSED'} {lat}"
              + (f" [{why}]" if why and not dump else "") + (f" since cooldown end {(st-prev[-1]-COOLDOWN)/1e9:.0f}s" if prev and elig else ""))
        if elig and (not dump or VERBOSE):
            for j in mon:
                if st - 100e6 <= j["t"] <= en + 500e6:
                    f = {k: v for k, v in j.items() if k not in ("timestamp", "t", "level", "target", "message")}
                    print(f"    {(j['t']-st)/1e6:+8.1f} ms {j['message']} {f}")
            for k in ("touched", "munmap", "spike-end"):
                print(f"    svc {k} at {(s[k]-st)/1e6:+.1f} ms")
print(tot)
