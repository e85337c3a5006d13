"""Each modstate binary's `snapshot export` of one database against `cp` + `sync` of it, interleaved.

Not part of `cargo bench` (it compares builds, which one process cannot): build each version,
copy its target/release/modstate aside, then

    python3 benches/snapshot_builds.py /path/to/db RUNS bin-before bin-after ...

and read the median export time and the median of the paired export/cp throughput ratios.
"""
# Interleaved: each binary's `snapshot export` of DB against cp + fsync of the same file.
import subprocess, time, statistics, sys, os
db = sys.argv[1]; runs = int(sys.argv[2]); bins = sys.argv[3:]
d = os.path.dirname(db)
def t(cmd):
    s = time.perf_counter(); subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL); return time.perf_counter() - s
def cp():
    out = os.path.join(d, 'cp.db')
    if os.path.exists(out): os.remove(out)
    return t(['sh', '-c', f'cp {db} {out} && sync {out} && sync -f {d}'])
def export(b):
    out = os.path.join(d, 'snap.db')
    if os.path.exists(out): os.remove(out)
    return t([b, '--db', db, 'snapshot', 'export', out])
res = {b: [] for b in bins}; cps = []
for b in bins: export(b)
cp()
for r in range(runs):
    for b in bins:
        c = cp(); e = export(b)
        res[b].append((e, c))
size = os.path.getsize(db) / 2**20
for b in bins:
    es = [e for e, _ in res[b]]; rs = [c / e for e, c in res[b]]
    print(f"{b}: export median {statistics.median(es)*1e3:.0f} ms ({min(es)*1e3:.0f}-{max(es)*1e3:.0f}), "
          f"{size/statistics.median(es):.0f} MiB/s; export/cp throughput ratio median {statistics.median(rs):.2f} "
          f"(min-max {min(rs):.2f}-{max(rs):.2f}, {runs} pairs)")
