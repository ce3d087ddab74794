"""The server under load: latency percentiles, throughput with micro-batching on and off, errors, server memory.

    python benchmarks/serve.py [--requests 1000] [--concurrency 8] [--time-limit 300] [--output FILE]

Indexes the toy world in a temporary cache folder, then twice starts `hybrid-retrieval serve --preset toy` on
127.0.0.1 (once with micro-batching, `--max-batch 32`, once without, `--max-batch 1`) and sends `--requests` text searches
to each from `--concurrency` client threads, each query a different caption of the toy gallery (no cache can answer
it). Each run is bounded in count and in time (`--time-limit` seconds). Prints one JSON object: per mode the p50 / p95 /
p99 latency seen by the client, requests per second, errors, the mean engine batch, and the server's resident memory
(RSS, from /proc) after a warm-up of 40 requests at the same concurrency and after the run; and the throughput ratio of batching on over off. Exits with
status 1 if any request failed or the server's memory grew by `--limit-mb` or more.

The client threads run on the same machine as the server: on a 2-core machine they take CPU from it, so the absolute
numbers are a floor; the ratio is measured side by side in one run.
"""
import argparse, json, os, platform, shutil, socket, subprocess, sys, tempfile, threading, time, urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import numpy as np
from common import percentiles, rss_mb   # this folder is first on sys.path: the script's own


def script()->str:
    beside = Path(sys.executable).parent/'hybrid-retrieval'
    return str(beside) if beside.is_file() else shutil.which('hybrid-retrieval')


def free_port()->int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]




def start(env:dict, max_batch:int, log)->tuple[subprocess.Popen, str]:
    "`hybrid-retrieval serve --preset toy` on a free port, once its health answers"
    port = free_port()
    proc = subprocess.Popen([script(), 'serve', '--preset', 'toy', '--port', str(port), '--max-batch', str(max_batch)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    base, deadline = f'http://127.0.0.1:{port}', time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None: raise RuntimeError(f'the server exited with status {proc.returncode}')
        try:
            with urllib.request.urlopen(f'{base}/api/health', timeout=5): return proc, base
        except OSError: time.sleep(0.5)
    proc.kill()
    raise RuntimeError('the server did not answer within 300 s')


def one(base:str, query:str)->tuple[float, int|None]:
    "Seconds for one search, and the engine batch it ran in (None: the request failed)"
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(f"{base}/api/search?{urllib.parse.urlencode({'q': query})}", timeout=120) as r:
            batch = json.loads(r.read())['server']['batch']
    except Exception: batch = None
    return time.perf_counter() - t, batch


def load(base:str, queries:list[str], concurrency:int, time_limit:float)->dict:
    "Send `queries` from `concurrency` threads, stopping new requests after `time_limit` seconds"
    results, started, lock = [], time.perf_counter(), threading.Lock()
    def worker(q):
        if time.perf_counter() - started > time_limit: return
        r = one(base, q)
        with lock: results.append(r)
    with ThreadPoolExecutor(concurrency) as pool: list(pool.map(worker, queries))
    wall = time.perf_counter() - started
    ok = np.array([s for s,b in results if b is not None])
    batches = [b for _,b in results if b is not None]
    return dict(sent=len(results), errors=sum(b is None for _,b in results), seconds=round(wall, 2),
                requests_per_s=round(len(ok) / wall, 2), **percentiles(ok, (50, 95, 99), digits=1),
                mean_batch=round(float(np.mean(batches)), 2), max_batch_seen=max(batches))


def run_mode(env:dict, max_batch:int, queries:list[str], args, log)->dict:
    proc, base = start(env, max_batch, log)
    try:
        load(base, queries[-40:], args.concurrency, args.time_limit)   # warm-up at full concurrency: batches allocate
        before = rss_mb(proc.pid)
        out = load(base, queries, args.concurrency, args.time_limit)
        after = rss_mb(proc.pid)
    finally:
        proc.terminate(); proc.wait(60)
    return out | dict(server_rss_mb_before=round(before, 1), server_rss_mb_after=round(after, 1),
                      server_rss_growth_mb=round(after - before, 1))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--requests', type=int, default=1000)
    ap.add_argument('--concurrency', type=int, default=8)
    ap.add_argument('--time-limit', type=float, default=300, help='seconds per mode')
    ap.add_argument('--limit-mb', type=float, default=50)
    ap.add_argument('--output', help='also write the JSON here')
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp())
    env = {**os.environ, 'XDG_CACHE_HOME': str(tmp), 'HF_HUB_OFFLINE': '1'}
    env.pop('HYBRID_RETRIEVAL_CONFIG', None)
    try:
        subprocess.run([script(), 'index', '--preset', 'toy'], env=env, check=True, capture_output=True)
        lines = (tmp/'hybrid_retrieval'/'toy'/'heldout'/'captions.jsonl').read_text().splitlines()
        captions = list(dict.fromkeys(json.loads(l)['caption'] for l in lines))
        queries = [captions[n % len(captions)] + ('' if n < len(captions) else f' ({n})') for n in range(args.requests)]
        with open(tmp/'server.log', 'w') as log:
            modes = {name: run_mode(env, n, queries, args, log) for name,n in (('batching', 32), ('no_batching', 1))}
    finally: shutil.rmtree(tmp, ignore_errors=True)
    out = dict(benchmark='serve', preset='toy', machine=f'{platform.machine()}, {os.cpu_count()} cores',
               requests=args.requests, concurrency=args.concurrency, **modes,
               throughput_ratio_batching_over_none=round(modes['batching']['requests_per_s']
                                                         / modes['no_batching']['requests_per_s'], 2))
    text = json.dumps(out, indent=2)
    print(text)
    if args.output: Path(args.output).write_text(text + '\n')
    bad = any(m['errors'] or m['server_rss_growth_mb'] >= args.limit_mb for m in modes.values())
    return 1 if bad else 0


if __name__ == '__main__': sys.exit(main())
