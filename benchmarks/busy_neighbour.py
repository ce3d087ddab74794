"""The demo beside a busy neighbour: how much slower `hybrid-retrieval demo` gets when other processes keep its cores busy.

    python benchmarks/busy_neighbour.py [--queries 300] [--cross-queries 10] [--neighbours N] [--cap 6]

Runs the demo once to generate the toy world (into a temporary cache), then times it alone, and beside `--neighbours`
busy processes (default 1), each a torch job multiplying matrices on its default thread pool (one thread per core), the
kind of neighbour seen to stall a run for 17 minutes. A fair share of the CPU bounds what to expect: beside one such
neighbour the demo gets half the cores (2x), beside two a third (3x). The busy run is repeated with
`OMP_WAIT_POLICY=ACTIVE`, the spinning waits this package turns off; runs are stopped at `--cap` times the time alone.
Prints one JSON object: the times, and each busy time as a ratio of the time alone (the target: within about 3x).
"""
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path
from hybrid_retrieval.device import usable_cores

NEIGHBOUR = 'import torch\na = torch.randn(384, 384)\nwhile True: a = torch.tanh(a @ a)'

def demo(args, env, cap=None):
    "Seconds one demo run takes (None if stopped at `cap` seconds)"
    exe = Path(sys.executable).parent/'hybrid-retrieval'
    cmd = [str(exe), 'demo', '--queries', str(args.queries), '--cross-queries', str(args.cross_queries),
           '--figure', str(Path(env['XDG_CACHE_HOME'])/'grid.png'), '--format', 'json']
    t0 = time.perf_counter()
    try: done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=cap)
    except subprocess.TimeoutExpired: return None
    if done.returncode: sys.exit(f"demo failed: {done.stderr.strip().splitlines()[-1]}")
    return round(time.perf_counter() - t0, 1)

def beside_neighbours(args, env, cap):
    busy = [subprocess.Popen([sys.executable, '-c', NEIGHBOUR], env={k: v for k,v in os.environ.items()
                                                                     if k != 'OMP_WAIT_POLICY'})
            for _ in range(args.neighbours)]
    try: time.sleep(3); return demo(args, env, cap)
    finally:
        for p in busy: p.kill(); p.wait()

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--queries', type=int, default=300)
    ap.add_argument('--cross-queries', type=int, default=10)
    ap.add_argument('--neighbours', type=int, default=1)
    ap.add_argument('--cap', type=float, default=6.0, help='stop a run at this many times the time alone')
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, 'XDG_CACHE_HOME': cache, 'HF_HUB_OFFLINE': '1'}
        env.pop('OMP_WAIT_POLICY', None)
        demo(args, env)                                            # generates the toy world and its index
        alone = demo(args, env)
        busy = beside_neighbours(args, env, args.cap * alone)
        spinning = beside_neighbours(args, {**env, 'OMP_WAIT_POLICY': 'ACTIVE'}, args.cap * alone)
    ratio = lambda t: None if t is None else round(t / alone, 2)
    print(json.dumps(dict(cores=usable_cores(), neighbours=args.neighbours, queries=args.queries,
                          cross_queries=args.cross_queries, alone_s=alone, busy_s=busy, busy_ratio=ratio(busy),
                          spinning_busy_s=spinning, spinning_busy_ratio=ratio(spinning), cap=args.cap,
                          ok=busy is not None and busy / alone <= 3)))

if __name__ == '__main__': main()
