"""The cascade on the toy world: what ITM on ITC's shortlist gives up against re-ranking every candidate.

    python benchmarks/cascade.py [--queries 1000] [--quick]

Writes `benchmarks/results/cascade_toy.json` and prints it. The shipped toy models, two generated worlds of 1,000
pictures (validation, where `k_itm` is chosen, and the held-out one the chapters report), 1,000 captions each, and the
`toy` preset's models and settings:
  choice   per world, fusion ('replace', the engine's default, and the preset's), k1 (20, the preset's, and 100) and
           k_itm: Recall@1 of the cascade and of full re-ranking, the
           share of queries whose top 10 is identical (same images, same order), whose top 10 holds the same
           images, and whose first result is the same. Each
           query's CLIP candidates are scored once by ITM and ITC; each k_itm's ranking is then the engine's own
           (`shortlist` + `fused_order`, the functions `HybridSearchEngine` ranks with), so the sweep costs one pass.
  table    the held-out world through `evaluate`: CLIP alone, CLIP -> ITM (k1 100), CLIP -> ITC -> ITM (k1 100, the
           chosen k_itm), ITC -> ITM (LAVIS's protocol, k_test 128): R@1, R@5, MRR and stage-2 ms per query.
"""
import argparse, sys, tempfile
from pathlib import Path
import numpy as np
from common import cpu, write_result
from hybrid_retrieval.config import load_config
from hybrid_retrieval.build import load_bi_encoder, load_cross_encoder, search_config
from hybrid_retrieval.index import build_index
from hybrid_retrieval.evaluation import prepare_eval_set, evaluate, report_rows
from hybrid_retrieval.fusion import shortlist
from hybrid_retrieval.hybrid_search import fused_order
from hybrid_retrieval.toy import toy_dataset, VALIDATION_SEED, HELDOUT_SEED

K1S, K_ITMS = (20, 100), (3, 5, 8, 10, 15, 20, 30, 50)


def one_pass(bi, ce, ds, queries:int, k1:int):
    "Per query: CLIP's top `k1` (gallery positions, scores), their ITM and ITC scores, and the relevant position"
    index, _ = build_index(bi, ds)
    es = prepare_eval_set(bi, ds, 'test', queries, 0, index)
    ids, clip = index.search(es.text_emb[es.t2i_queries], k1)
    cand = np.array([[es.positions[i] for i in row] for row in ids])
    texts = [es.captions[q] for q in es.t2i_queries for _ in range(k1)]
    images = [es.paths[i] for i in cand.ravel()]
    itm = ce.score_pairs(texts, images, 'itm').reshape(cand.shape)
    itc = ce.score_pairs(texts, images, 'itc').reshape(cand.shape)
    return cand, np.asarray(clip), itm, itc, np.asarray(es.caption_image)[es.t2i_queries]


def sweep(cand, clip, itm, itc, gold, config, k1:int)->list[dict]:
    "Recall@1 and top-10 identity of each k_itm against full re-ranking, over the first `k1` candidates"
    def top10(k):
        out = []
        for c, s, m, t in zip(cand[:, :k1], clip[:, :k1], itm[:, :k1], itc[:, :k1]):
            cross = np.full(k1, np.nan); keep = shortlist(t, k); cross[keep] = m[keep]
            out.append(c[fused_order(s, cross, config, t)[0][:10]])
        return np.array(out)
    full = top10(None)
    r1 = lambda tops: float(np.mean(tops[:, 0] == gold) * 100)
    rows = []
    for k in (k for k in K_ITMS if k < k1):
        tops = top10(k)
        rows.append(dict(k1=k1, k_itm=k, r1=round(r1(tops), 2), r1_full=round(r1(full), 2),
                         r1_change=round(r1(tops) - r1(full), 2),
                         top10_identical=round(float(np.mean((tops == full).all(1))) * 100, 1),
                         top10_same_set=round(float(np.mean([set(a) == set(b) for a, b in zip(tops, full)])) * 100, 1),
                         top1_same=round(float(np.mean(tops[:, 0] == full[:, 0])) * 100, 1)))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--queries', type=int, default=1000)
    ap.add_argument('--k-itm', type=int, default=None, help='the k_itm of the table (default: the setting default)')
    ap.add_argument('--quick', action='store_true', help='100 pictures, 50 queries: a smoke test of this script')
    ap.add_argument('--output', default=str(Path(__file__).parent/'results'/'cascade_toy.json'))
    args = ap.parse_args()
    n, queries = (100, 50) if args.quick else (1000, args.queries)
    config = load_config(preset='toy'); config.show_progress = False
    bi, ce = load_bi_encoder(config), load_cross_encoder(config)
    engine_config = search_config(config)
    tmp = Path(tempfile.mkdtemp())
    out = dict(cpu=cpu(), queries=queries, pictures=n, fusion=config.fusion, choice={})
    for name, seed in (('validation', VALIDATION_SEED), ('heldout', HELDOUT_SEED)):
        ds = toy_dataset(tmp/name, n=n, seed=seed)
        ce.dataset = ds
        passed = one_pass(bi, ce, ds, queries, max(K1S))
        out['choice'][name] = [dict(fusion=f) | row for f in ('replace', config.fusion) for k1 in K1S
                               for row in sweep(*passed, engine_config.replace(fusion=f), k1)]
    k_itm = args.k_itm or engine_config.k_itm or 10
    report = evaluate(bi, ce, ds, methods=('clip', 'hybrid'), directions=('t2i',), k1s=(100,), fusions=(config.fusion,),
                      queries=queries, show_progress=False)
    cascade = evaluate(bi, ce, ds, methods=('hybrid', 'lavis'), directions=('t2i',), k1s=(100,),
                       fusions=(config.fusion,), k_itm=k_itm, queries=queries, show_progress=False)
    names = ['CLIP alone', 'CLIP -> ITM (k1 100)', f'CLIP -> ITC -> ITM (k1 100, k_itm {k_itm})',
             'ITC -> ITM (LAVIS, k_test 128)']
    out['table'] = [dict(method=m, **{k: r[k] for k in ('R@1', 'R@5', 'MRR', 'stage2_ms')})
                    for m, r in zip(names, report_rows(report) + report_rows(cascade))]
    write_result(out, args.output)


if __name__ == '__main__': sys.exit(main())
