"""Query cache: a repeated query against a first-time query, same engine, same run.

    python benchmarks/query_cache.py [--arch tiny|blip] [--gallery 100] [--queries 10] [--k1 50] [--k2 10]

Builds an engine over a generated gallery -- the tiny models (`tiny`, seconds) or the full-size BLIP-base ITM architecture
with random weights (`blip`, minutes on a CPU; timing does not depend on the weights) -- with `use_cache=True`, runs each
query twice, and prints one JSON object: median latency of first and repeated queries, their ratio, and whether the
repeated results were identical.
"""
import argparse, json, statistics, sys, tempfile, time
from pathlib import Path
import torch
from common import tiny_engine   # this folder is first on sys.path: the script's own
from hybrid_retrieval.device import Timer
from hybrid_retrieval.cross_encoder import CrossEncoder

COLOURS, SHAPES = ['red', 'green', 'blue', 'yellow', 'purple', 'orange'], ['circle', 'square', 'triangle']

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--arch', choices=['tiny', 'blip'], default='tiny')
    ap.add_argument('--gallery', type=int, default=100)
    ap.add_argument('--queries', type=int, default=10)
    ap.add_argument('--k1', type=int, default=50)
    ap.add_argument('--k2', type=int, default=10)
    args = ap.parse_args(argv)
    queries = [f'a {c} {s}' for c in COLOURS for s in SHAPES][:args.queries]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ce = None
        if args.arch == 'blip':
            from rerank import build   # this folder is first on sys.path: the script's own
            ce = CrossEncoder.from_model(*build('blip', torch.float32), use_enc_token=False)
        engine = tiny_engine(tmp, args.gallery, ce, k1=args.k1, k2=args.k2, use_cache=True)
        gallery = engine.dataset
        engine.cross_encoder.image_features([gallery.path(i) for i in gallery.image_ids])   # features warm: time search, not first encoding
        first, repeat, identical = [], [], True
        for q in queries:
            with Timer() as t: a = engine.text_to_image_hybrid_search(q)
            first.append(t.seconds)
            with Timer() as t: b = engine.text_to_image_hybrid_search(q)
            repeat.append(t.seconds)
            identical &= (a.results == b.results) and b.cached and not a.cached
    f, r = statistics.median(first), statistics.median(repeat)
    out = dict(arch=args.arch, gallery=args.gallery, queries=len(queries), k1=args.k1, k2=args.k2, first_ms=round(f * 1000, 3),
               repeat_ms=round(r * 1000, 3), speedup=round(f / r, 1), identical=bool(identical))
    print(json.dumps(out))
    return out

if __name__ == '__main__': main()
