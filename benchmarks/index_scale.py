"""Stage 1 past memory: flat, HNSW, IVF-PQ in memory and IVF-PQ on disk, on 100k and 1M synthetic 512-d vectors.

Every index is built the way `hybrid-retrieval index --engine ray` builds it: from embedding shards on disk, through
`hybrid_retrieval.scale.index_from_shards`. Each is then searched in a fresh process, one query at a time (as the
engine's stage 1 does), twice: first with the index's files dropped from the OS page cache (cold), then again (warm:
the page cache makes repeated queries look fast). Printed as one JSON object (and written to --out):

    build time, bytes per vector on disk, resident memory while searching (VmRSS after the warm pass; VmHWM is the
    peak), p50 / p95 latency cold and warm, recall@10 against flat (how many of flat's 10 it returns in its 10) and
    recall 10@100 (how many of flat's 10 it returns among its first 100: what stage 2 gets to re-rank).
"IVF-PQ on disk + re-score" is what `--type auto` builds when the vectors do not fit the budget: the codes find 100
candidates, which are re-scored with their exact vectors read from the index's shards (`refine=100`).

The vectors are clustered and low-rank, as CLIP's are: 1,000 cluster centres, a 64-dimensional spread around them
and a little isotropic noise, normalised. Goal on 1M: IVF-PQ on disk reaches recall@10 >= 0.9 at p50 < 10 ms on two
cores with < 300 MB resident.

    python benchmarks/index_scale.py                       # 100k and 1M (about 25 minutes on two cores)
    python benchmarks/index_scale.py --sizes 1000000 --only hnsw --hnsw-max 1000000   # add one row to the results
    python benchmarks/index_scale.py --sizes 20000 --queries 50   # a quick look
"""
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np
from common import percentiles, rss_mb, write_result   # this folder is first on sys.path: the script's own

HERE = Path(__file__).resolve().parent
DIM, CLUSTERS, RANK = 512, 1000, 64


def synthetic(n:int, seed:int, chunk:int=50_000):
    "Yield `n` clustered, low-rank, normalised float32 vectors in chunks (the same centres for every seed)"
    basis_rng, rng = np.random.default_rng(12345), np.random.default_rng(seed)
    centres = basis_rng.normal(size=(CLUSTERS, DIM)).astype(np.float32)
    spread = (basis_rng.normal(size=(RANK, DIM)) / np.sqrt(RANK)).astype(np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        x = centres[rng.integers(0, CLUSTERS, m)] + rng.normal(size=(m, RANK)).astype(np.float32) @ spread
        x += 0.15 * rng.normal(size=(m, DIM)).astype(np.float32)
        yield x / np.linalg.norm(x, axis=1, keepdims=True)


def write_shards(n:int, folder:Path, shard_size:int=100_000)->list[Path]:
    "The gallery as embedding shards, the files `index --engine ray` writes"
    from hybrid_retrieval.embeddings import write_embeddings
    folders, done = [], 0
    for k,x in enumerate(synthetic(n, seed=0, chunk=shard_size)):
        folders.append(folder/f'{k:06d}')
        write_embeddings(folders[-1], dict(model_id='synthetic', ids=[f'v{i}' for i in range(done, done + len(x))],
                                           skipped=[]), x)
        done += len(x)
    return folders


def drop_from_page_cache(folder:Path):
    "Ask the kernel to forget the cached pages of every file in `folder` (clean pages need no privileges)"
    for f in folder.iterdir():
        if f.is_file():
            fd = os.open(f, os.O_RDONLY)
            try: os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally: os.close(fd)




def search_child(index_path:str, queries_path:str, k:int)->dict:
    "In a fresh process: load the index, search one query at a time, cold then warm"
    import faiss
    from hybrid_retrieval.index import ImageIndex
    queries = np.load(queries_path)
    drop_from_page_cache(Path(index_path))
    rss0 = rss_mb()
    t = time.perf_counter(); index = ImageIndex.load(index_path); load_s = time.perf_counter() - t
    passes = {}
    for name in ('cold', 'warm'):
        times, found = [], []
        for q in queries:
            t = time.perf_counter(); ids, _ = index.search(q[None], k); times.append(time.perf_counter() - t)
            found.append(ids[0])
        passes[name] = times
    return dict(load_s=load_s, rss_bytes=(rss_mb() - rss0) * 2**20, peak_rss_bytes=rss_mb(key='VmHWM') * 2**20,
                threads=faiss.omp_get_max_threads(), found=found,
                **{f'{name}_{k}': v for name,t in passes.items() for k,v in percentiles(t).items() if k != 'runs'})


def measure(name:str, folders, path:Path, queries_path:Path, truth, **params)->dict:
    "Build one index from the shards, then search it in a fresh process"
    from hybrid_retrieval.scale import index_from_shards
    t = time.perf_counter()
    index, why = index_from_shards(folders, 'synthetic', DIM, path, show_progress=False, **params)
    build_s = time.perf_counter() - t
    disk = sum(f.stat().st_size for f in path.iterdir() if f.is_file() and f.name.startswith('index.'))
    n = len(index); del index
    out = subprocess.run([sys.executable, __file__, '--search', str(path), '--queries-file', str(queries_path)],
                         capture_output=True, text=True, check=True)
    r = json.loads(out.stdout)
    found = r.pop('found')
    row = dict(index=name, n=n, build_s=round(build_s, 1), bytes_per_vector=round(disk / n, 1),
               disk_mb=round(disk / 2**20, 1), resident_mb=round(r.pop('rss_bytes') / 2**20, 1),
               peak_resident_mb=round(r.pop('peak_rss_bytes') / 2**20, 1),
               recall_at_10=round(float(np.mean([len(set(f[:10]) & set(t)) / 10 for f,t in zip(found, truth)])), 4),
               recall_10_at_100=round(float(np.mean([len(set(f) & set(t)) / 10 for f,t in zip(found, truth)])), 4),
               **{k: round(v, 3) for k,v in r.items()}, choice=why)
    print(json.dumps(row), file=sys.stderr)
    return row


def exact_top(folders, queries:np.ndarray, k:int=10)->list[list[str]]:
    "Flat's answer, by brute force over the shards: the ids of each query's `k` best vectors"
    from hybrid_retrieval.embeddings import read_embeddings
    best_s, best_i = np.full((len(queries), k), -np.inf, np.float32), np.empty((len(queries), k), object)
    for f in folders:
        man, emb = read_embeddings(f, 'synthetic', mmap=True)
        s = queries @ np.asarray(emb).T
        top = np.argpartition(-s, k, axis=1)[:, :k]
        cand_s = np.concatenate([best_s, np.take_along_axis(s, top, 1)], 1)
        cand_i = np.concatenate([best_i, np.array(man['ids'], object)[top]], 1)
        order = np.argsort(-cand_s, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(cand_s, order, 1), np.take_along_axis(cand_i, order, 1)
    return [list(row) for row in best_i]


KINDS = ('flat', 'hnsw', 'ivfpq in memory', 'ivfpq on disk', 'ivfpq on disk + re-score')

def run_size(n:int, n_queries:int, budget:int, hnsw_max:int, work:Path, kinds=KINDS)->list[dict]:
    "Every index type in `kinds` on `n` vectors"
    from hybrid_retrieval.index import _pq_bytes
    folders = write_shards(n, work/'shards')
    queries = next(synthetic(n_queries, seed=99))
    np.save(qpath := work/'queries.npy', queries)
    truth = exact_top(folders, queries)
    pq = dict(index_type='ivfpq', pq_m=_pq_bytes(n, DIM, budget))
    params = {'flat': dict(index_type='flat'), 'hnsw': dict(index_type='hnsw'), 'ivfpq in memory': pq,
              'ivfpq on disk': dict(pq, on_disk=True, refine=None),
              'ivfpq on disk + re-score': dict(pq, on_disk=True, refine=100)}
    rows = [measure(kind, folders, work/kind.replace(' ', '_').replace(',', ''), qpath, truth, **params[kind])
            for kind in kinds if kind != 'hnsw' or n <= hnsw_max]
    print(f'{n:,} vectors done', file=sys.stderr)
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--sizes', default='100000,1000000', help='gallery sizes, comma-separated')
    p.add_argument('--queries', type=int, default=200, help='queries per index')
    p.add_argument('--budget-mb', type=int, default=300, help="the memory budget: IVF-PQ's code size and 'auto'")
    p.add_argument('--hnsw-max', type=int, default=100_000,
                   help='build HNSW only up to this size (its build on two cores grows past 20 minutes at 1M)')
    p.add_argument('--only', help=f'comma-separated subset of {KINDS}; with an existing --out, its rows for these '
                                  'indexes and sizes are replaced and the others kept')
    p.add_argument('--out', default=str(HERE/'results'/'index_scale_cpu.json'))
    p.add_argument('--search', help=argparse.SUPPRESS)           # the child process: search this index folder
    p.add_argument('--queries-file', help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.search: return print(json.dumps(search_child(args.search, args.queries_file, 100)))
    from hybrid_retrieval.index import choose_index
    rows, sizes = [], [int(s) for s in args.sizes.split(',')]
    kinds = tuple(k.strip() for k in args.only.split(',')) if args.only else KINDS
    if unknown := set(kinds) - set(KINDS): p.error(f'unknown index kinds {sorted(unknown)}; choose from {KINDS}')
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix='index_scale-') as work:
            rows += run_size(n, args.queries, args.budget_mb << 20, args.hnsw_max, Path(work), kinds)
    if args.only and Path(args.out).is_file():    # keep the other rows of an earlier run
        new = {(r['index'], r['n']) for r in rows}
        rows = [r for r in json.loads(Path(args.out).read_text())['rows'] if (r['index'], r['n']) not in new] + rows
        rows.sort(key=lambda r: (r['n'], KINDS.index(r['index'])))
        sizes = sorted({r['n'] for r in rows})
    auto = {n: choose_index(n, DIM, args.budget_mb << 20).reason for n in sizes}   # what --type auto picks
    result = dict(benchmark='index_scale', machine=f'{os.cpu_count()} CPUs', dim=DIM, queries=args.queries, k=100,
                  budget_mb=args.budget_mb, data=f'{CLUSTERS} clusters, rank-{RANK} spread, 0.15 isotropic noise',
                  auto=auto, rows=rows)
    write_result(result, args.out)


if __name__ == '__main__': main()
