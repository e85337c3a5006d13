#!/usr/bin/env python3
"""CPU time (user + system, from wait4) of whole `modstate artifact get` processes against
`cat` of the same envelope, in rounds: each round runs every candidate's get, each right after
a `cat` of its own, in alternating order; prints p50 / p10-p90 and the median of the paired
get / cat ratios.

usage: get_cpu.py ROUNDS FILE LABEL BIN DB DIGEST [LABEL BIN DB DIGEST ...]
(issue 28's "fast first byte"; see BENCHMARKS.md)
"""
import os
import subprocess
import sys


def cpu_ms(args, env):
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, status, ru = os.wait4(p.pid, 0)
    assert status == 0, args
    return (ru.ru_utime + ru.ru_stime) * 1e3


def q(values, p):
    v = sorted(values)
    return v[round((len(v) - 1) * p)]


def main():
    rounds, catf = int(sys.argv[1]), sys.argv[2]
    rest = sys.argv[3:]
    cands = [rest[i:i + 4] for i in range(0, len(rest), 4)]
    env = dict(os.environ)
    env.pop("MODSTATE_DB", None)
    get = lambda c: [c[1], "--db", c[2], "artifact", "get", c[3]]
    for c in cands:
        cpu_ms(get(c), env)
    cpu_ms(["cat", catf], env)
    times = {c[0]: [] for c in cands}
    ratios = {c[0]: [] for c in cands}
    cat = []
    for i in range(rounds):
        for c in cands if i % 2 == 0 else cands[::-1]:
            # Each get is paired with a cat run just before it, so that a candidate's place
            # in the round (the load changes from one process to the next) does not bias it.
            c_ms = cpu_ms(["cat", catf], env)
            cat.append(c_ms)
            g = cpu_ms(get(c), env)
            times[c[0]].append(g)
            ratios[c[0]].append(g / c_ms)
    print(f"cat CPU p50 {q(cat, .5):.2f} ms")
    for c in cands:
        v, r = times[c[0]], ratios[c[0]]
        print(f"{c[0]}: p50 {q(v, .5):.2f} ms (p10-p90 {q(v, .1):.2f}-{q(v, .9):.2f}); "
              f"median paired ratio {q(r, .5):.2f}x (p10-p90 {q(r, .1):.2f}-{q(r, .9):.2f})")


if __name__ == "__main__":
    main()
