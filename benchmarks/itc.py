"""The contrastive head (ITC) over a query's candidates: per pair, as the first version scored it, against the stored
image embeddings (`CrossEncoder.itc_scores`), side by side in one run.

    python benchmarks/itc.py [--candidates 100] [--archs blip,blip2] [--out benchmarks/results/itc_cpu.json]

Real BLIP ITM (base) and BLIP-2 ITM (ViT-g + Q-Former) architectures with random weights (timing does not depend on the
weights; no hub needed); the candidates' vision features are in the store (random, of the real shape), as in `suite.py`.
Per pair recomputes both sides for every candidate (BLIP-2: the whole image-side Q-Former pass); stored computes each
image's side once (`first`, then kept) and each query's text side once (`warm`: a later query over the same candidates).
Prints one JSON object: seconds per query each way, the speed-up, and the largest score difference.
"""
import argparse, tempfile
from pathlib import Path
import torch
from common import cpu, write_result   # this folder is first on sys.path: the script's own
from suite import wrap, fill_store, jpeg_folder, QUERY
from rerank import build
from hybrid_retrieval.device import Timer


def per_pair(ce, paths)->tuple[float, torch.Tensor]:
    "Seconds and scores of ITC computed pair by pair (`pair_logits`), 25 pairs a pass"
    feats = ce.image_features(paths)
    with Timer(ce.device) as t, torch.inference_mode():
        ids, mask = ce.tokenize([QUERY])
        scores = torch.cat([ce.pair_logits(ids.expand(len(b), -1), mask.expand(len(b), -1), torch.stack(b), 'itc')
                            for b in (feats[s:s + 25] for s in range(0, len(feats), 25))])
    return t.seconds, scores.float()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--candidates', type=int, default=100)
    ap.add_argument('--archs', default='blip,blip2')
    ap.add_argument('--out', default=str(Path(__file__).parent/'results'/'itc_cpu.json'))
    args = ap.parse_args(argv)
    result = dict(cpu=cpu(), threads=torch.get_num_threads(), candidates=args.candidates)
    with tempfile.TemporaryDirectory() as tmp:
        gallery = jpeg_folder(Path(tmp)/'g', args.candidates)
        paths = [gallery.path(i) for i in gallery.image_ids]
        for arch in args.archs.split(','):
            ce = wrap(*build(arch, torch.float32), torch.device('cpu'), torch.float32)
            fill_store(ce, paths)
            pair_s, pair_scores = per_pair(ce, paths)
            with Timer() as first: ce.itc_scores([QUERY] * len(paths), paths)
            with Timer() as warm: stored = ce.itc_scores([QUERY] * len(paths), paths)
            result[arch] = dict(per_pair_s=round(pair_s, 3), stored_first_s=round(first.seconds, 3),
                                stored_warm_s=round(warm.seconds, 4), speedup_warm=round(pair_s / warm.seconds, 1),
                                speedup_first=round(pair_s / first.seconds, 2),
                                max_abs_difference=float(abs(pair_scores.numpy() - stored).max()))
    write_result(result, args.out)


if __name__ == '__main__': main()
