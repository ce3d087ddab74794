"""Memory over many queries: a stress of 1000+ queries, asserting that resident memory stays flat.

    python benchmarks/stress.py [--queries 1000] [--gallery 100] [--k1 20] [--k2 5] [--limit-mb 50]

Builds an engine over a generated gallery with the tiny models (random weights; memory behaviour does not depend on
them), runs 100 warm-up queries, then `--queries` distinct text queries (so no query cache or feature reuse hides a
leak) mixed with one image query in ten, and prints one JSON object: resident memory (RSS, from /proc) after the warm-up
and at the end, the growth, and the throughput. Exits with status 1 if the growth reaches `--limit-mb`.
"""
import argparse, gc, json, sys, tempfile, time
from pathlib import Path
from common import rss_mb, tiny_engine   # this folder is first on sys.path: the script's own

COLOURS, SHAPES = ['red', 'green', 'blue', 'yellow', 'purple', 'orange'], ['circle', 'square', 'triangle']


def queries(n, start=0):
    return [f'a {COLOURS[i % 6]} {SHAPES[i // 6 % 3]} number {i}' for i in range(start, start + n)]

def run(engine, gallery, texts):
    for n,q in enumerate(texts):
        if n % 10 == 9: engine.image_to_image_hybrid_search(gallery.paths[n % len(gallery)])
        else: engine.text_to_image_hybrid_search(q)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--queries', type=int, default=1000)
    ap.add_argument('--gallery', type=int, default=100)
    ap.add_argument('--k1', type=int, default=20)
    ap.add_argument('--k2', type=int, default=5)
    ap.add_argument('--limit-mb', type=float, default=50)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        engine = tiny_engine(Path(tmp), args.gallery, k1=args.k1, k2=args.k2)
        gallery = engine.dataset
        run(engine, gallery, queries(100, start=10**6))                  # warm-up: allocator pools, feature store
        gc.collect(); start = rss_mb(); t0 = time.perf_counter()
        run(engine, gallery, queries(args.queries))
        seconds = time.perf_counter() - t0
        gc.collect(); end = rss_mb()
    out = dict(queries=args.queries, gallery=args.gallery, k1=args.k1, k2=args.k2, rss_after_warmup_mb=round(start, 1),
               rss_end_mb=round(end, 1), growth_mb=round(end - start, 1), limit_mb=args.limit_mb,
               queries_per_s=round(args.queries / seconds, 1), ok=end - start < args.limit_mb)
    print(json.dumps(out))
    return 0 if out['ok'] else 1

if __name__ == '__main__': sys.exit(main())
