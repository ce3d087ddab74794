"""What a GPU machine checks that CPU tests cannot: the CUDA paths give the CPU's answers.

    python benchmarks/cuda_check.py [--output FILE]

Tiny random-weight BLIP-2 and BLIP ITM models (no hub), 24 sample images, one query. For each backend it scores the
pairs on the CPU in float32 (the reference) and on CUDA in: float32 with the first version's batch of 4; the default (half
precision, batch sized by free memory, one pinned transfer); stored keys and values; a device-resident feature store.
It reports each one's largest score difference from the reference, whether the ranking is the same, and the batch
size that the memory measurement chose. Then the toy world's engine (the `toy` preset, its trained models) runs the
same 100 text queries on CPU and CUDA: the top-10 lists and the Recall@1 should agree. Prints JSON; exits 1 if a
check fails. Needs CUDA; not part of the tests (CI has no GPU).
"""
import argparse, json, sys, tempfile
from pathlib import Path
import torch
from hybrid_retrieval.files import atomic_write
from hybrid_retrieval.data import make_sample_dataset
from hybrid_retrieval.cross_encoder import CrossEncoder
from hybrid_retrieval.tiny import save_tiny_blip2_itm, save_tiny_blip_itm
from hybrid_retrieval.config import config_from_dict
from hybrid_retrieval.build import build_engine
from hybrid_retrieval.toy import toy_dataset
from hybrid_retrieval.cli import main as cli

def rank(s): return torch.argsort(torch.as_tensor(s, dtype=torch.float32), descending=True).tolist()

def backend_checks(folder, paths, query, device):
    ref = CrossEncoder(str(folder), device='cpu', dtype=torch.float32, batch_size=4).score(query, paths)
    runs = dict(fp32_batch4=dict(dtype=torch.float32, batch_size=4), default=dict(),
                store_kv=dict(store_kv=True), device_store=dict(device_store_bytes=2**28))
    out = {}
    for name, kw in runs.items():
        ce = CrossEncoder(str(folder), device=device, **kw)
        ce.score(query, paths[:3])                     # the first pass measures memory per pair
        s = ce.score(query, paths)
        tol = 1e-4 if ce.dtype == torch.float32 else 2e-2
        diff = float((torch.as_tensor(s, dtype=torch.float32) - torch.as_tensor(ref, dtype=torch.float32)).abs().max())
        out[name] = dict(dtype=str(ce.dtype).removeprefix('torch.'), max_diff=round(diff, 6), tol=tol,
                         same_top1=rank(s)[0] == rank(ref)[0], bytes_per_item=ce.batcher.item_bytes,
                         store_device=str(ce.store.device), ok=diff <= tol)
    return out

def toy_checks(device, n_queries=100):
    gallery = toy_dataset()
    queries = [gallery.captions[i][0] for i in gallery.image_ids[:n_queries]]
    if rc := cli(['index', '--preset', 'toy']): raise SystemExit(rc)
    tops = {}
    for dev in ('cpu', device):
        engine = build_engine(config_from_dict({'hybrid_search': {'device': dev}}, 'toy'))
        tops[dev] = [[r.image_id for r in engine.text_to_image_hybrid_search(q).results] for q in queries]
    same10 = sum(a == b for a, b in zip(tops['cpu'], tops[device]))
    sets10 = sum(set(a) == set(b) for a, b in zip(tops['cpu'], tops[device]))
    top1 = sum(a[0] == b[0] for a, b in zip(tops['cpu'], tops[device]))
    return dict(queries=len(queries), same_top10_order=same10, same_top10_set=sets10, same_top1=top1,
                ok=top1 >= 0.97 * len(queries) and sets10 >= 0.95 * len(queries))

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--output', default=str(Path(__file__).parent/'results'/'cuda_check.json'))
    ap.add_argument('--device', default='cuda', help="'cpu' only checks this script itself")
    args = ap.parse_args(argv)
    if args.device == 'cuda' and not torch.cuda.is_available(): ap.error('no CUDA device: this script checks CUDA')
    out = dict(gpu=torch.cuda.get_device_name() if args.device == 'cuda' else None, torch=torch.__version__)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = make_sample_dataset(tmp/'images', n=24).paths
        for name, save in (('blip2-itm', save_tiny_blip2_itm), ('blip-itm', save_tiny_blip_itm)):
            out[name] = backend_checks(save(tmp/name), paths, 'a red circle', args.device)
    out['toy_world'] = toy_checks(args.device)
    out['ok'] = all(r['ok'] for b in ('blip2-itm', 'blip-itm') for r in out[b].values()) and out['toy_world']['ok']
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(Path(args.output), 'w') as f: f.write(json.dumps(out, indent=2) + '\n')
    print(json.dumps(out, indent=2))
    return 0 if out['ok'] else 1

if __name__ == '__main__': sys.exit(main())
