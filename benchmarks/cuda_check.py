"""What a GPU machine checks that CPU tests cannot: the CUDA paths give the CPU's answers.

    python benchmarks/cuda_check.py [--output FILE]

Tiny random-weight BLIP-2 and BLIP ITM models (no hub), 24 sample images, one query. For each backend it scores the
pairs on the CPU in float32 (the reference) and on CUDA in: float32 with the first version's batch of 4; the default (half
precision, batch sized by free memory, one pinned transfer); stored keys and values; a device-resident feature store;
each `cuda_graphs` mode (fixed shapes, CUDA graphs, torch.compile), and graphs over a device-resident store.
It reports each one's largest score difference from the reference, whether the ranking is the same, and the batch
size that the memory measurement chose. JPEG decoding on the GPU (`decode_batch`) is compared with the CPU path: pixel
differences in levels of 255, and the tiny CLIP's embeddings' cosine. Then the toy world's engine (the `toy` preset,
its trained models) runs the same 100 text queries on CPU, on CUDA, and on CUDA with every GPU path on (graphs,
features on the device, one-pass batches): the top-10 lists and the Recall@1 should agree. Prints JSON; exits 1 if a
check fails. Needs CUDA; not part of the tests (CI has no GPU).
"""
import argparse, json, sys, tempfile
from pathlib import Path
import torch
from PIL import Image
from hybrid_retrieval.files import atomic_write
from hybrid_retrieval.data import make_sample_dataset, ImageDataset
from hybrid_retrieval.images import load_image
from hybrid_retrieval.bi_encoder import BiEncoder
from hybrid_retrieval.jpeg_decode import pixel_spec, decode_batch
from hybrid_retrieval.cross_encoder import CrossEncoder
from hybrid_retrieval.tiny import save_tiny_blip2_itm, save_tiny_blip_itm, save_tiny_clip
from hybrid_retrieval.config import config_from_dict
from hybrid_retrieval.build import build_engine
from hybrid_retrieval.toy import toy_dataset
from hybrid_retrieval.cli import main as cli

def rank(s): return torch.argsort(torch.as_tensor(s, dtype=torch.float32), descending=True).tolist()

def backend_checks(folder, paths, query, device):
    ref = CrossEncoder(str(folder), device='cpu', dtype=torch.float32, batch_size=4).score(query, paths)
    runs = dict(fp32_batch4=dict(dtype=torch.float32, batch_size=4), default=dict(),
                store_kv=dict(store_kv=True), device_store=dict(device_store_bytes=2**28),
                static=dict(cuda_graphs='static'), graphs=dict(cuda_graphs='graphs'), compile=dict(cuda_graphs='compile'),
                graphs_device_store=dict(cuda_graphs='graphs', device_store_bytes=2**28))
    out = {}
    for name, kw in runs.items():
        ce = CrossEncoder(str(folder), device=device, **kw)
        ce.score(query, paths[:3])                     # the first pass measures memory per pair
        s = ce.score(query, paths)
        tol = 1e-4 if ce.dtype == torch.float32 else 2e-2
        diff = float((torch.as_tensor(s, dtype=torch.float32) - torch.as_tensor(ref, dtype=torch.float32)).abs().max())
        out[name] = dict(dtype=str(ce.dtype).removeprefix('torch.'), max_diff=round(diff, 6), tol=tol,
                         same_top1=rank(s)[0] == rank(ref)[0], bytes_per_item=ce.batcher.item_bytes,
                         store_device=str(ce.store.device), mode=ce.runner.mode, ok=diff <= tol)
    return out

def decode_checks(tmp, paths, device):
    "decode_batch on the GPU against the CPU path (Pillow + the transform): pixels, and the tiny CLIP's embeddings"
    jpegs = []
    for p in paths:
        Image.open(p).convert('RGB').resize((320, 240)).save(j := tmp/f'{Path(p).stem}.jpg', quality=90); jpegs.append(j)
    bi = BiEncoder(save_tiny_clip(tmp/'clip'), device=device, show_progress=False)
    spec = pixel_spec(bi.preprocess)
    done, pixels, left = decode_batch(jpegs, spec, device)
    cpu = torch.stack([bi.preprocess(load_image(j)) for j in jpegs]).to(device)   # the CPU path: Pillow
    levels = (pixels - cpu).abs() * 0.27 * 255
    plain = bi.encode_pixels(cpu); bi.pixel_spec = spec
    gpu = bi.encode_gallery(ImageDataset(tmp, [j.stem for j in jpegs], jpegs)).embeddings
    cos = float((plain * gpu).sum(1).min())
    return dict(decoded_on_gpu=len(done), left_to_cpu=len(left), max_level_diff=round(float(levels.max()), 2),
                mean_level_diff=round(float(levels.mean()), 3), min_cosine=round(cos, 5),
                ok=len(done) == len(jpegs) and float(levels.mean()) < 1.5 and cos >= 0.99)

def toy_decode_check(tmp, device):
    "The toy world's 1,000 held-out pictures saved as JPEG (quality 95): its CLIP's text->image Recall@1, both decoders"
    from hybrid_retrieval.build import load_bi_encoder
    gallery = toy_dataset()
    folder = tmp/'toy_jpegs'; folder.mkdir()
    jpegs = [folder/f'{i}.jpg' for i in gallery.image_ids]
    for i, j in zip(gallery.image_ids, jpegs): gallery.image(i).save(j, quality=95)
    bi = load_bi_encoder(config_from_dict({'hybrid_search': {'device': device}}, 'toy'))
    bi.show_progress = False
    text = bi.encode_text([gallery.captions[i][0] for i in gallery.image_ids])
    out = {}
    for name, spec in (('cpu_path', None), ('decode_batch', pixel_spec(bi.preprocess))):
        bi.pixel_spec = spec
        emb = bi.encode_gallery(ImageDataset(folder, list(gallery.image_ids), jpegs)).embeddings
        out[f'recall_at_1_{name}'] = round(float(((text @ emb.T).argmax(1) == range(len(jpegs))).mean()) * 100, 2)
        out.setdefault('reference', emb)
    out['min_cosine'] = round(float((out.pop('reference') * emb).sum(1).min()), 5)
    return out | dict(ok=abs(out['recall_at_1_cpu_path'] - out['recall_at_1_decode_batch']) <= 1.0)

def toy_checks(device, n_queries=100):
    gallery = toy_dataset()
    queries = [gallery.captions[i][0] for i in gallery.image_ids[:n_queries]]
    if rc := cli(['index', '--preset', 'toy']): raise SystemExit(rc)
    tops, fast = {}, {'cuda_graphs': 'graphs', 'one_pass': True, 'gallery_on_device': True}
    for name, dev, stage2 in (('cpu', 'cpu', {}), ('cuda', device, {}), ('cuda_gpu_paths', device, fast)):
        engine = build_engine(config_from_dict({'hybrid_search': {'device': dev, 'stage2': stage2}}, 'toy'))
        run = engine.batch_text_to_image_search(queries) if stage2 else [engine.text_to_image_hybrid_search(q) for q in queries]
        tops[name] = [[r.image_id for r in response.results] for response in run]
    out = {}
    for name in ('cuda', 'cuda_gpu_paths'):
        pairs = list(zip(tops['cpu'], tops[name]))
        same10, sets10 = sum(a == b for a, b in pairs), sum(set(a) == set(b) for a, b in pairs)
        top1 = sum(a[0] == b[0] for a, b in pairs)
        out[name] = dict(same_top10_order=same10, same_top10_set=sets10, same_top1=top1,
                         ok=top1 >= 0.97 * len(queries) and sets10 >= 0.95 * len(queries))
    return dict(queries=len(queries), **out, ok=all(o['ok'] for o in out.values()))

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
        out['jpeg_decode'] = decode_checks(tmp, paths, args.device) | dict(toy_world=toy_decode_check(tmp, args.device))
    out['toy_world'] = toy_checks(args.device)
    out['ok'] = (all(r['ok'] for b in ('blip2-itm', 'blip-itm') for r in out[b].values()) and out['toy_world']['ok']
                 and out['jpeg_decode']['ok'] and out['jpeg_decode']['toy_world']['ok'])
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(Path(args.output), 'w') as f: f.write(json.dumps(out, indent=2) + '\n')
    print(json.dumps(out, indent=2))
    return 0 if out['ok'] else 1

if __name__ == '__main__': sys.exit(main())
