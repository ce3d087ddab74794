"""One benchmark for every performance goal, on whatever device is there.

    python benchmarks/suite.py [--device cpu|cuda] [--only embed,stage1,stage2,cascade,itc_stage1,e2e,gpu_paths] [--quick]
                               [--output-dir DIR] [--baseline EARLIER_JSON]

Writes `suite_<cpu|cuda>.json` and `suite_<cpu|cuda>.md` (the README's table) to benchmarks/results/, prints the JSON.
`--table JSON` only rewrites the table of an earlier run.
Real architectures with random weights (timing does not depend on the weights; no hub needed):
  embed   CLIP ViT-B-32 throughput over a generated folder of 500x375 JPEGs (decoding counts), per batch size: images/s
  stage1  text encoding + FAISS search p50 / p95: flat over a Flickr30k-sized gallery (31,014), IVF-flat over 1M vectors
  stage2  re-ranking 100 candidates from the feature store, BLIP-2 ITM (ViT-g + Q-Former) and BLIP ITM (base): float32
          and the device's half precision (`half_dtype`: skipped where emulated, with a probe saying how much slower
          it would be), the first version's batch of 4 and the engine's own (unset: as memory allows), stored features and
          stored cross-attention keys and values
  cascade stage 2 as the engine runs it with ITC's shortlist (`k_itm`): 100 candidates, ITC over all of them from stored
          ITC embeddings, ITM on the best k_itm; BLIP-2 and BLIP, float32 and (CPU) dynamic int8, stored features and
          stored keys+values, p50 / p95 per k_itm, and int8's speed-up over float32 beside it
  itc_stage1 ITC as stage 1: the query's ITC text embedding and the best 100 of a Flickr30k-sized gallery's stored ITC
          embeddings (BLIP: one per image; BLIP-2: 32 per image, best query), p50 / p95
  e2e     one text query end to end (k1 100, k2 10; engine defaults, BLIP-2) p50 / p95; a batch of queries, queries/s
  gpu_paths the GPU paths beside the plain ones: stage 2 (BLIP-2, 100 candidates, the device's half precision, features
          on the device) in each `cuda_graphs` mode (CPU: eager and static) with its warm-up (capture / compile) time,
          its scores' largest difference from eager and, on CUDA, a profile (GPU busy share, kernel and graph launches);
          e2e with the features in host memory, on the device, + CUDA graphs, + one-pass batches; CLIP embedding with
          JPEGs decoded by DataLoader workers and by `decode_batch` on the device (cosine of the two embeddings)
On CUDA (or with --baseline) a targets table puts the issue's goals beside this run and the earlier run (`--baseline`).
Memory: the process's peak RSS, and on CUDA `torch.cuda.max_memory_allocated` per section.
Stage 2 and e2e read candidates' features from the store, filled with random features of the right shape (the vision
tower's cost is the embedding and indexing side, measured by benchmarks/rerank.py and stage2_features.py).
`--quick` runs everything with tiny models and small sizes: a smoke test of this script, not a measurement.
"""
import argparse, datetime, io, json, os, platform, sys, tempfile
from pathlib import Path
from types import SimpleNamespace
import numpy as np, torch, transformers, faiss, open_clip
from PIL import Image

from rerank import build, QUERY   # the full-size BLIP / BLIP-2 architectures, random weights, as rerank.py builds them
from common import percentiles, peak_rss_mb, cpu   # this folder is first on sys.path: the script's own
from hybrid_retrieval.files import atomic_write
from hybrid_retrieval.device import Timer, default_device, autocast_dtype, half_dtype, cpu_has_bf16
from hybrid_retrieval.data import ImageDataset
from hybrid_retrieval.bi_encoder import BiEncoder
from hybrid_retrieval.index import ImageIndex, ivf_nlist
from hybrid_retrieval.cross_encoder import CrossEncoder
from hybrid_retrieval.feature_store import FeatureStore
from hybrid_retrieval.hybrid_search import HybridSearchEngine, SearchConfig, ItcIndex
from hybrid_retrieval.core import GRAPH_MODES
from hybrid_retrieval.jpeg_decode import pixel_spec
from hybrid_retrieval.tiny import save_tiny_clip, save_tiny_blip2_itm, save_tiny_blip_itm

FULL = dict(embed_images=128, embed_batches=(32, 128), gallery=31_014, ivf=1_000_000, queries=50, candidates=100,
            reps=2, e2e_queries=2, batch_queries=2, clip='ViT-B-32', k_itms=(10, 16, 20, 32))   # sized for < 10 minutes on 2 CPU cores
CUDA = dict(embed_images=4096, embed_batches=(128, 256, 512), reps=20, e2e_queries=20, batch_queries=32)
QUICK = dict(embed_images=16, embed_batches=(8,), gallery=2_000, ivf=20_000, queries=5, candidates=8, reps=2,
             e2e_queries=2, batch_queries=2, k_itms=(2, 4))
CAPTIONS = ['a dog running through the snow', 'two children playing football in a park', 'a man riding a red bicycle',
            'a woman in a blue dress walking on the beach', 'a group of people sitting around a table']

def cuda_peak(device, reset=False):
    "Peak CUDA memory allocated since the last reset, in MB (None on a CPU)"
    if device.type != 'cuda': return None
    peak = torch.cuda.max_memory_allocated(device) / 2**20
    if reset: torch.cuda.reset_peak_memory_stats(device)
    return round(peak, 1)

def environment(device):
    c = cpu()
    return dict(date=datetime.date.today().isoformat(), device=str(device), cpu=c['model'], cpu_count=c['cores'],
                cpu_flags=c['flags'],
                threads=torch.get_num_threads(), cpu_bf16=cpu_has_bf16(),
                gpu=torch.cuda.get_device_name(device) if device.type == 'cuda' else None,
                half=str(half_dtype(device)).removeprefix('torch.') if half_dtype(device) else None,
                torch=torch.__version__, transformers=transformers.__version__, faiss=faiss.__version__,
                open_clip=open_clip.__version__, python=platform.python_version())

def jpeg_folder(folder:Path, n:int)->ImageDataset:
    "`n` 500x375 JPEGs of smooth random colour fields (photo-sized files that take real decoding)"
    folder.mkdir(parents=True, exist_ok=True)
    rng, paths = np.random.default_rng(0), []
    for i in range(n):
        small = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((500, 375), Image.BICUBIC)
        noisy = np.clip(np.asarray(img, np.int16) + rng.integers(-12, 12, (375, 500, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(p := folder/f'{i:06d}.jpg', quality=90); paths.append(p)
    return ImageDataset(folder, [p.stem for p in paths], paths, name='jpegs')

def empty_gallery(folder:Path, n:int)->ImageDataset:
    "`n` empty files: a gallery whose images are never decoded (their features come from a stand-in store)"
    folder.mkdir(parents=True, exist_ok=True)
    ids = [f'{i:07d}' for i in range(n)]
    for i in ids: (folder/f'{i}.jpg').touch()
    return ImageDataset(folder, ids, [folder/f'{i}.jpg' for i in ids], name='gallery')

def unit(rng, n, dim):
    x = rng.standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)

def clip_model(args, tmp, device):
    if args.quick: return BiEncoder(str(save_tiny_clip(tmp/'clip')), None, device=device)
    return BiEncoder(args.sizes['clip'], None, device=device)   # random weights, the real architecture

def bench_embed(args, tmp, device):
    s = args.sizes
    gallery = jpeg_folder(tmp/'jpegs', s['embed_images'])
    bi, rows = clip_model(args, tmp, device), []
    bi.encode_gallery(ImageDataset(gallery.root, gallery.image_ids[:8], gallery.paths[:8]))   # warm-up
    for batch in s['embed_batches']:
        bi.batch_size = batch
        with Timer(device) as t: bi.encode_gallery(gallery)
        rows.append(dict(batch_size=batch, images_per_s=round(len(gallery) / t.seconds, 1)))
    best = max(rows, key=lambda r: r['images_per_s'])
    return dict(model=bi.model_id, images=len(gallery), image_size='500x375 JPEG', per_batch=rows,
                best_batch=best['batch_size'], images_per_s=best['images_per_s'], cuda_peak_mb=cuda_peak(device, True),
                decode=decode_compare(gallery.paths[:32]), tower=tower_compare(bi, gallery.paths[:32], device))

def decode_compare(paths)->dict:
    "Milliseconds per image to decode the JPEGs and make CLIP's 224 px input: PIL (the engine's path) and torchvision"
    from torchvision.io import decode_jpeg
    import torchvision.transforms.v2.functional as TF
    data = [Path(p).read_bytes() for p in paths]
    def pil(b): return Image.open(io.BytesIO(b)).convert('RGB').resize((224, 224), Image.BICUBIC)
    def tv(b): return TF.resize(decode_jpeg(torch.frombuffer(bytearray(b), dtype=torch.uint8)), [224, 224], antialias=True)
    out = {}
    for name, f in (('pil', pil), ('decode_jpeg', tv)):
        f(data[0])
        with Timer() as t:
            for b in data: f(b)
        out[f'{name}_ms'] = round(t.seconds / len(data) * 1000, 2)
    return out

def tower_compare(bi, paths, device)->dict:
    "CLIP's image tower in float32 and with bfloat16 weights (where the CPU computes bfloat16 natively): images/s, cosine"
    if device.type != 'cpu' or not cpu_has_bf16(): return dict(bf16='not run: no native bfloat16 here')
    import copy
    x = torch.stack([bi.preprocess(Image.open(p).convert('RGB')) for p in paths])
    half = copy.deepcopy(bi.model).to(torch.bfloat16)
    out = {}
    with torch.inference_mode():
        for name, model, xs in (('float32', bi.model, x), ('bfloat16', half, x.bfloat16())):
            model.encode_image(xs[:4])
            with Timer() as t: out[name] = model.encode_image(xs).float()
            out[f'{name}_images_per_s'] = round(len(x) / t.seconds, 1)
    cos = torch.nn.functional.cosine_similarity(out.pop('float32'), out.pop('bfloat16'))
    return out | dict(min_cosine=round(float(cos.min()), 5))

def stage1_times(bi, index, queries):
    times = []
    for q in queries:
        with Timer(bi.device) as t: index.search(bi.encode_text([q]), 100)
        times.append(t.seconds)
    return times

def bench_stage1(args, tmp, device):
    s, rng = args.sizes, np.random.default_rng(0)
    bi = clip_model(args, tmp, device)
    queries = (CAPTIONS * s['queries'])[:s['queries']]
    flat = ImageIndex(bi.dim, 'flat', bi.model_id)
    flat.add([str(i) for i in range(s['gallery'])], unit(rng, s['gallery'], bi.dim))
    stage1_times(bi, flat, queries[:2])   # warm-up
    out = dict(model=bi.model_id, k=100, flat=dict(n=s['gallery'], **percentiles(stage1_times(bi, flat, queries))))
    del flat
    ivf = ImageIndex(bi.dim, 'ivfflat', bi.model_id, nlist=ivf_nlist(s['ivf']))   # lists for 1M, trained on a sample
    with Timer() as t_build:
        ivf.train(unit(rng, min(s['ivf'], 200_000), bi.dim))
        for start in range(0, s['ivf'], 250_000):
            n = min(250_000, s['ivf'] - start)
            ivf.add([str(i) for i in range(start, start + n)], unit(rng, n, bi.dim))
    out['ivf'] = dict(n=s['ivf'], nlist=ivf._index.nlist, nprobe=ivf._index.nprobe, build_s=round(t_build.seconds, 1),
                      gpu=ivf.use_gpu, **percentiles(stage1_times(bi, ivf, queries)))
    return out

def load_arch(arch, dtype, args, tmp):
    "The full-size architecture (or a tiny one with --quick) in `dtype`, and its processor"
    if not args.quick: return build(arch, dtype)
    folder = tmp/f'tiny_{arch}'
    if not folder.exists(): (save_tiny_blip2_itm if arch == 'blip2' else save_tiny_blip_itm)(folder)
    ce = CrossEncoder(str(folder), device='cpu', dtype=dtype)
    return ce.model, ce.processor

def wrap(model, processor, device, dtype, store=None, **kw):
    "A CrossEncoder around `model`, its store (default: a new one in host memory) big enough for every candidate"
    store = store if store is not None else FeatureStore(max_bytes=64 * 2**30, model_id='suite')
    return CrossEncoder.from_model(model, processor, device=device, dtype=dtype, store=store, **kw)

class _RandomVision(torch.nn.Module):
    "Stands in for a vision tower: random features of the real shape, at no cost (the store is filled with them)"
    def __init__(self, tokens, width, dtype):
        super().__init__(); self.tokens,self.width = tokens,width
        self.dummy = torch.nn.Parameter(torch.zeros(1, dtype=dtype), requires_grad=False)
    def forward(self, pixel_values):
        g = torch.Generator().manual_seed(len(pixel_values))
        x = torch.randn(len(pixel_values), self.tokens, self.width, generator=g)
        return SimpleNamespace(last_hidden_state=x.to(pixel_values.device, self.dummy.dtype))

def vision_shape(ce):
    vc = ce.model.config.vision_config
    return (vc.image_size // vc.patch_size)**2 + 1, vc.hidden_size

def fill_store(ce, paths):
    "Put random features (or packs of keys and values, under store_kv) for `paths` in `ce`'s store"
    real = ce.model.vision_model
    ce.model.vision_model = _RandomVision(*vision_shape(ce), next(real.parameters()).dtype).to(ce.device)
    try: ce.image_features(paths)
    finally: ce.model.vision_model = real

def time_rerank(ce, paths, reps, batch):
    ce.batch_size = batch
    ce.score(QUERY, paths[:4])                         # warm-up at this batch size
    times = []
    for _ in range(reps):
        with Timer(ce.device) as t: ce.score(QUERY, paths)
        times.append(t.seconds)
    return times

def half_probe(model, processor, device, paths, half):
    "How many times slower `half` (emulated on this CPU) is than float32, on 8 pairs; casts `model` to `half`"
    out = {}
    for dt in (torch.float32, half):
        ce = wrap(model.to(dt), processor, device, dt)
        fill_store(ce, paths[:8])
        out[dt] = time_rerank(ce, paths[:8], 1, 8)[0]
    return round(out[half] / out[torch.float32], 2)

def bench_stage2_arch(arch, args, tmp, device, paths):
    rows, half = [], half_dtype(device)
    for dtype in (torch.float32,) + ((half,) if half else ()):
        model, processor = load_arch(arch, dtype, args, tmp)
        for store_kv in (False, True):
            ce = wrap(model, processor, device, dtype, store_kv=store_kv)
            cuda_peak(device, reset=True)
            fill_store(ce, paths)
            for batch in (4, None):
                times = time_rerank(ce, paths, args.sizes['reps'], batch)
                rows.append(dict(dtype=str(dtype).removeprefix('torch.'), batch=batch or 'auto',
                                 stored='keys+values' if store_kv else 'features', **percentiles(times),
                                 store_bytes_per_image=ce.store.nbytes // len(ce.store), cuda_peak_mb=cuda_peak(device)))
    base = next(r for r in rows if r['dtype'] == 'float32' and r['stored'] == 'features' and r['batch'] == 4)
    for r in rows: r['speedup'] = round(base['p50_ms'] / r['p50_ms'], 2)
    out = dict(candidates=len(paths), rows=rows, best=min(rows, key=lambda r: r['p50_ms']))
    if device.type == 'cpu' and not half:
        out['bfloat16_emulated_slowdown'] = half_probe(model, processor, device, paths, torch.bfloat16)
    return out

def bench_stage2(args, tmp, device):
    paths = jpeg_folder(tmp/'candidates', args.sizes['candidates']).paths   # decoded once, to fill the store
    return {arch: bench_stage2_arch(arch, args, tmp, device, paths) for arch in ('blip2', 'blip')}

def time_engine(engine, cands, reps):
    "Seconds of `reps` calls of the engine's stage 2 on `cands`, after a warm-up (which stores the ITC embeddings)"
    engine.rerank(QUERY, cands)
    times = []
    for _ in range(reps):
        with Timer(engine.cross_encoder.device) as t: engine.rerank(QUERY, cands)
        times.append(t.seconds)
    return times

def bench_cascade_arch(arch, args, tmp, device, gallery, bi, index):
    model, processor = load_arch(arch, torch.float32, args, tmp)
    cands, rows = [(i, 0.0) for i in gallery.image_ids], []
    for int8 in (False, True) if device.type == 'cpu' else (False,):
        for store_kv in (True, False) if int8 else (False, True):   # int8 quantises in place: keys and values kept first
            ce = wrap(model, processor, device, torch.float32, store_kv=store_kv, cpu_int8=int8)
            fill_store(ce, gallery.paths)
            for k in args.sizes['k_itms']:
                config = SearchConfig(k1=len(cands), k2=min(10, len(cands)), k_itm=k, show_progress=False)
                engine = HybridSearchEngine(bi, ce, index, gallery, config)
                rows.append(dict(precision='int8' if int8 else 'float32', stored='keys+values' if store_kv else 'features',
                                 k_itm=k, **percentiles(time_engine(engine, cands, args.sizes['reps']))))
    f32 = {(r['stored'], r['k_itm']): r['p50_ms'] for r in rows if r['precision'] == 'float32'}
    for r in rows: r['speedup_vs_float32'] = round(f32[r['stored'], r['k_itm']] / r['p50_ms'], 2)
    return dict(candidates=len(cands), rows=rows)

def bench_cascade(args, tmp, device):
    rng = np.random.default_rng(3)
    gallery = jpeg_folder(tmp/'candidates', args.sizes['candidates'])   # decoded once, to fill the store
    bi = clip_model(args, tmp, device)
    index = ImageIndex(bi.dim, 'flat', bi.model_id)
    index.add(gallery.image_ids, unit(rng, len(gallery), bi.dim))
    return {arch: bench_cascade_arch(arch, args, tmp, device, gallery, bi, index) for arch in ('blip2', 'blip')}

def bench_itc_stage1(args, tmp, device):
    s, rng, out = args.sizes, np.random.default_rng(4), {}
    queries = (CAPTIONS * s['queries'])[:s['queries']]
    for arch in ('blip', 'blip2'):
        ce = wrap(*load_arch(arch, torch.float32, args, tmp), device, torch.float32)
        per_image = getattr(ce.model.config, 'num_query_tokens', 1)
        dim = ce.model.config.image_text_hidden_size
        emb = torch.from_numpy(unit(rng, s['gallery'] * per_image, dim)).reshape(s['gallery'], per_image, dim)
        index = ItcIndex([str(i) for i in range(s['gallery'])], emb.squeeze(1))   # the engine's stage 1 by ITC
        search = lambda q: index.search(ce.itc_text_embeddings([q]).float().numpy(), 100)
        search(queries[0])   # warm-up
        times = []
        for q in queries:
            with Timer(device) as t: search(q)
            times.append(t.seconds)
        out[arch] = dict(gallery=s['gallery'], vectors_per_image=per_image, dim=dim, k=100, **percentiles(times))
    return out

class _StandInStore(FeatureStore):
    "A store that has features and ITC embeddings for every image: one of a few random tensors of the real shapes"
    def __init__(self, pool, itc_pool):
        super().__init__(max_bytes=0, model_id='stand-in'); self.pool,self.itc_pool = pool,itc_pool
    def get(self, key):
        self.hits += 1
        pool = self.itc_pool if key.endswith('|itc') else self.pool
        return pool[hash(key) % len(pool)]

def e2e_engine(args, tmp, device, features_on='device', cuda_graphs='eager', one_pass=False):
    "The e2e engine: a Flickr30k-sized gallery's flat index, BLIP-2 at the engine's defaults, stand-in stored features"
    s, rng = args.sizes, np.random.default_rng(1)
    bi = clip_model(args, tmp, device)
    gallery = empty_gallery(tmp/'e2e', s['gallery'])
    index = ImageIndex(bi.dim, 'flat', bi.model_id)
    index.add(gallery.image_ids, unit(rng, len(gallery), bi.dim))
    dtype = autocast_dtype(device) or torch.float32   # the engine's defaults: CUDA half, CPU float32, batch unset
    ce = CrossEncoder.from_model(*load_arch('blip2', dtype, args, tmp), device=device, dtype=dtype, cuda_graphs=cuda_graphs)
    vdtype = next(ce.model.vision_model.parameters()).dtype
    itc_shape = (ce.model.config.num_query_tokens, ce.model.config.image_text_hidden_size)
    where = ce.device if features_on == 'device' else 'cpu'
    ce.store = _StandInStore([torch.randn(*vision_shape(ce)).to(where, vdtype) for _ in range(16)],
                             [torch.nn.functional.normalize(torch.randn(*itc_shape), dim=-1) for _ in range(16)])
    return HybridSearchEngine(bi, ce, index, gallery, SearchConfig(k1=100, k2=10, show_progress=False, one_pass=one_pass))

def time_e2e(engine, args, device)->dict:
    "One text query at a time (p50 / p95, and its stages), then a batch of queries: queries/s"
    s = args.sizes
    queries = (CAPTIONS * s['e2e_queries'])[:s['e2e_queries']]
    batch = (CAPTIONS * s['batch_queries'])[:s['batch_queries']]
    engine.text_to_image_hybrid_search(queries[0]); engine.batch_text_to_image_search(batch)   # warm-up: every shape
    cuda_peak(device, reset=True)
    times, stage1, stage2 = [], [], []
    for q in queries:
        with Timer(device) as t: r = engine.text_to_image_hybrid_search(q)
        times.append(t.seconds); stage1.append(r.stage1_s); stage2.append(r.stage2_s)
    with Timer(device) as tb: engine.batch_text_to_image_search(batch)
    return dict(query=percentiles(times), stage1=percentiles(stage1), stage2=percentiles(stage2),
                batch_queries=len(batch), queries_per_s=round(len(batch) / tb.seconds, 2), cuda_peak_mb=cuda_peak(device))

def bench_e2e(args, tmp, device):
    engine = e2e_engine(args, tmp, device)
    ce = engine.cross_encoder
    return dict(gallery=len(engine.index), k1=100, k2=10, k_itm=engine.config.k_itm, cross_encoder='blip2',
                dtype=str(ce.dtype).removeprefix('torch.'), **time_e2e(engine, args, device))

def profile_stage2(ce, paths)->dict:
    "Where one stage-2 call's time goes on CUDA: its wall time, the GPU's time in kernels, the kernels launched"
    from torch.profiler import profile, ProfilerActivity
    ce.score(QUERY, paths)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof, Timer(ce.device) as t:
        ce.score(QUERY, paths)
    rows = prof.key_averages()
    busy_us = sum(getattr(r, 'self_device_time_total', getattr(r, 'self_cuda_time_total', 0)) for r in rows)
    launches = sum(r.count for r in rows if r.key in ('cudaLaunchKernel', 'cuLaunchKernel', 'cudaLaunchKernelExC'))
    graphs = sum(r.count for r in rows if r.key == 'cudaGraphLaunch')
    return dict(wall_ms=round(t.seconds * 1000, 2), kernel_ms=round(busy_us / 1000, 2),
                gpu_busy_share=round(busy_us / 1e6 / t.seconds, 3), kernel_launches=launches, graph_launches=graphs)

def bench_stage2_modes(args, tmp, device, paths)->dict:
    "BLIP-2 ITM on 100 candidates in one pass, features on the device, in each `cuda_graphs` mode: p50 / p95, scores"
    dtype = half_dtype(device) if device.type == 'cuda' else torch.float32
    model, processor = load_arch('blip2', dtype, args, tmp)
    store = FeatureStore(max_bytes=64 * 2**30, model_id='suite', device=device)   # the gallery on the device
    fill_store(wrap(model, processor, device, dtype, store=store), paths)
    rows, ref = [], None
    for mode in GRAPH_MODES if device.type == 'cuda' else ('eager', 'static'):
        ce = wrap(model, processor, device, dtype, store=store, cuda_graphs=mode, batch_size=len(paths))   # one pass
        with Timer(device) as warm:
            for _ in range(3): scores = ce.score(QUERY, paths)   # captures / compiles the one bucket the calls use
        ref, times = scores if ref is None else ref, []
        for _ in range(args.sizes['reps']):
            with Timer(device) as t: ce.score(QUERY, paths)
            times.append(t.seconds)
        rows.append(dict(mode=ce.runner.mode, dtype=str(dtype).removeprefix('torch.'), warmup_s=round(warm.seconds, 1),
                         max_abs_diff_vs_eager=round(float(np.abs(scores - ref).max()), 5), **percentiles(times),
                         profile=profile_stage2(ce, paths) if device.type == 'cuda' else None))
    return dict(candidates=len(paths), rows=rows, best=min(rows, key=lambda r: r['p50_ms'])['mode'])

def bench_embed_decode(args, tmp, device)->dict:
    "CLIP embedding with JPEGs decoded by DataLoader workers (Pillow) and by `decode_batch` on the device: images/s"
    gallery = jpeg_folder(tmp/'jpegs', args.sizes['embed_images'])
    bi, out = clip_model(args, tmp, device), {}
    bi.batch_size = args.sizes['embed_batches'][-1]
    for name, spec in (('dataloader', None), ('decode_batch', pixel_spec(bi.preprocess))):
        bi.pixel_spec = spec
        bi.encode_gallery(ImageDataset(gallery.root, gallery.image_ids[:8], gallery.paths[:8]))   # warm-up
        with Timer(device) as t: emb = bi.encode_gallery(gallery).embeddings
        out[name] = dict(images_per_s=round(len(gallery) / t.seconds, 1))
        out.setdefault('reference', emb)
    cos = (out.pop('reference') * emb).sum(1)
    return dict(images=len(gallery), batch_size=bi.batch_size, min_cosine=round(float(cos.min()), 5), **out)

def bench_gpu_paths(args, tmp, device):
    "The GPU paths side by side with the plain ones: graphs, features on the device, one-pass batches, JPEG decoding"
    paths = jpeg_folder(tmp/'candidates', args.sizes['candidates']).paths
    e2e = {}
    variants = dict(host=dict(features_on='host'), device=dict(), graphs=dict(cuda_graphs='graphs'),
                    graphs_one_pass=dict(cuda_graphs='graphs', one_pass=True))
    for name, kw in variants.items() if device.type == 'cuda' else [('host', dict(features_on='host')),
                                                                      ('static', dict(cuda_graphs='static'))]:
        e2e[name] = time_e2e(e2e_engine(args, tmp, device, **kw), args, device)
    return dict(stage2=bench_stage2_modes(args, tmp, device, paths), e2e=e2e, embed=bench_embed_decode(args, tmp, device))

SECTIONS = dict(embed=bench_embed, stage1=bench_stage1, stage2=bench_stage2, cascade=bench_cascade,
                itc_stage1=bench_itc_stage1, e2e=bench_e2e, gpu_paths=bench_gpu_paths)

def ms(x): return f"{x['p50_ms']:,.1f} / {x['p95_ms']:,.1f}"

ARCHS = (('blip2', 'BLIP-2'), ('blip', 'BLIP'))

def per_arch(r, section):
    "(architecture's name, its results, one row) for every row of `section`, BLIP-2 first"
    for arch, name in ARCHS:
        st = r.get(section, {}).get(arch) or {}
        for row in st.get('rows', []): yield name, st, row

def table(r)->str:
    "The markdown table of one suite run"
    env, rows = r['environment'], []
    where = env['gpu'] or f"{env['cpu']}, {env['threads']} threads"
    add = lambda what, value, note='': rows.append(f'| {what} | {value} | {note} |')
    if 'embed' in r:
        e = r['embed']; add('CLIP ViT-B-32 embedding (JPEG decoding included)', f"{e['images_per_s']:,.0f} images/s",
                            f"batch {e['best_batch']}")
        if 'decode' in e:
            d = e['decode']
            add('JPEG decode + resize to 224 px, per image: PIL / torchvision decode_jpeg', f"{d['pil_ms']} / "
                f"{d['decode_jpeg_ms']} ms", '32 JPEGs, 500x375')
        if 'bfloat16_images_per_s' in e.get('tower', {}):
            w = e['tower']
            add('CLIP image tower alone: float32 / bfloat16 weights', f"{w['float32_images_per_s']} / "
                f"{w['bfloat16_images_per_s']} images/s", f"cosine of the embeddings >= {w['min_cosine']}")
    if 'stage1' in r:
        s1 = r['stage1']
        add(f"stage 1: text + FAISS flat, {s1['flat']['n']:,} images, p50 / p95", f"{ms(s1['flat'])} ms", 'k1 = 100')
        add(f"stage 1: text + FAISS IVF-flat, {s1['ivf']['n']:,} vectors, p50 / p95", f"{ms(s1['ivf'])} ms",
            f"nprobe {s1['ivf']['nprobe']} of {s1['ivf']['nlist']}")
    for name, st, row in per_arch(r, 'stage2'):
        add(f"stage 2: {name} ITM, {st['candidates']} candidates, {row['dtype']}, batch {row['batch']}, stored "
            f"{row['stored']}, p50 / p95", f"{ms(row)} ms", f"{row['speedup']}× batch 4, the first version's")
    for arch, name in ARCHS:
        if slower := r.get('stage2', {}).get(arch, {}).get('bfloat16_emulated_slowdown'):
            add(f"stage 2: {name} ITM in bfloat16", 'not run', f"emulated on this CPU: {slower}× slower than float32 (8 pairs)")
    for name, st, row in per_arch(r, 'cascade'):
        add(f"stage 2 cascade: {name}, ITC on {st['candidates']} -> ITM on {row['k_itm']}, {row['precision']}, stored "
            f"{row['stored']}, p50 / p95", f"{ms(row)} ms", f"{row['speedup_vs_float32']}× float32")
    for arch, name in (('blip', 'BLIP'), ('blip2', 'BLIP-2')):
        if arch not in r.get('itc_stage1', {}): continue
        it = r['itc_stage1'][arch]
        add(f"ITC as stage 1: {name}, {it['gallery']:,} images x {it['vectors_per_image']} vectors, p50 / p95",
            f"{ms(it)} ms", f"k = {it['k']}, text pass included")
    if 'e2e' in r:
        e = r['e2e']
        cascade = f", ITM on {e['k_itm']}" if e.get('k_itm') else ''
        add(f"text query end to end ({e['gallery']:,} images, k1 100{cascade} -> k2 10, BLIP-2, {e['dtype']}), p50 / p95",
            f"{ms(e['query'])} ms", f"stage 2: {ms(e['stage2'])} ms")
        add(f"batched text queries ({e['batch_queries']} at once)", f"{e['queries_per_s']} queries/s", '')
    gpu_path_rows(r.get('gpu_paths'), add)
    cuda = f"CUDA peak {r['cuda_peak_mb']} MB" if r['cuda_peak_mb'] else ''
    add('peak memory (process RSS)', f"{r['peak_rss_mb']:,.0f} MB", cuda)
    head = (f"Measured {env['date']} on {where} (`python benchmarks/suite.py`):\n\n"
            "| what | measured | note |\n|---|---|---|\n")
    return head + '\n'.join(rows) + '\n' + targets_table(r.get('targets'))

def gpu_path_rows(g, add):
    "The table's rows for the GPU paths section"
    if not g: return
    for row in g['stage2']['rows']:
        busy = f"; GPU busy {row['profile']['gpu_busy_share']:.0%} of the call" if row.get('profile') else ''
        add(f"stage 2: BLIP-2 ITM, {g['stage2']['candidates']} candidates, {row['dtype']}, features on the device, "
            f"cuda_graphs {row['mode']}, p50 / p95", f"{ms(row)} ms",
            f"scores within {row['max_abs_diff_vs_eager']} of eager; warm-up {row['warmup_s']} s{busy}")
    for name, e in g['e2e'].items():
        add(f"text query end to end, {name}, p50 / p95", f"{ms(e['query'])} ms",
            f"{e['queries_per_s']} queries/s batched ({e['batch_queries']})")
    d = g['embed']
    add('CLIP embedding: JPEGs decoded by DataLoader workers / by decode_batch on the device',
        f"{d['dataloader']['images_per_s']:,.0f} / {d['decode_batch']['images_per_s']:,.0f} images/s",
        f"embeddings' cosine >= {d['min_cosine']}")

TARGETS = (('stage 2: BLIP-2 ITM, 100 candidates, p50 (ms)', '<=', 8), ('stage 2: BLIP-2 ITM, 100 candidates, p95 (ms)', '<=', 12),
           ('text query end to end, p50 (ms)', '<=', 20), ('text query end to end, p95 (ms)', '<=', 30),
           ('batched text queries (queries/s)', '>=', 300), ('CLIP embedding with JPEG decoding (images/s)', '>=', 4000),
           ('peak GPU memory (MB)', None, None))

def headline(r)->list:
    "This run's (or an earlier run's) figures for `TARGETS`, best configuration of each; None where not measured"
    g, out = r.get('gpu_paths') or {}, []
    stage2 = [x for x in (g.get('stage2') or {}).get('rows', [])] or [
        x for x in r.get('stage2', {}).get('blip2', {}).get('rows', []) if x['dtype'] != 'float32' and x['batch'] == 'auto'
        and x['stored'] == 'features']
    best2 = min(stage2, key=lambda x: x['p50_ms']) if stage2 else {}
    e2e = list((g.get('e2e') or {}).values()) + ([r['e2e']] if 'e2e' in r else [])
    best = min(e2e, key=lambda x: x['query']['p50_ms'])['query'] if e2e else {}
    embed = [r.get('embed', {}).get('images_per_s'), (g.get('embed') or {}).get('decode_batch', {}).get('images_per_s')]
    return [best2.get('p50_ms'), best2.get('p95_ms'), best.get('p50_ms'), best.get('p95_ms'),
            max((x['queries_per_s'] for x in e2e), default=None), max((x for x in embed if x), default=None),
            r.get('cuda_peak_mb')]

def targets(r, base=None)->list[dict]:
    "Each target beside this run's figure and an earlier run's (`base`), and whether this run meets it"
    now, then = headline(r), headline(base) if base else [None] * len(TARGETS)
    met = lambda v, op, t: None if v is None or op is None or r.get('quick') else (v <= t if op == '<=' else v >= t)
    return [dict(what=w, target=f'{op} {t:,}' if op else 'reported', measured=v, earlier=b, met=met(v, op, t))
            for (w, op, t), v, b in zip(TARGETS, now, then)]

def targets_table(rows)->str:
    if not rows: return ''
    fmt = lambda v: '—' if v is None else f'{v:,}'
    lines = [f"| {x['what']} | {x['target']} | {fmt(x['measured'])} | {fmt(x['earlier'])} | "
             f"{'' if x['met'] is None else 'yes' if x['met'] else 'no'} |" for x in rows]
    return ('\nTargets, this run beside the earlier one (`--baseline`):\n\n| target | goal | this run | earlier | met |\n'
            '|---|---|---|---|---|\n' + '\n'.join(lines) + '\n')

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--device', default=None, help='cpu or cuda; default: cuda when available')
    ap.add_argument('--only', default=','.join(SECTIONS), help='comma-separated sections: ' + ', '.join(SECTIONS))
    ap.add_argument('--quick', action='store_true', help='tiny models, small sizes: a smoke test, not a measurement')
    ap.add_argument('--output-dir', default=str(Path(__file__).parent/'results'))
    ap.add_argument('--table', metavar='JSON', help="only write the markdown table of a suite's JSON, beside it")
    ap.add_argument('--baseline', metavar='JSON', help="an earlier run's JSON: the targets table shows both (CUDA)")
    args = ap.parse_args(argv)
    if args.table:
        path = Path(args.table)
        if not path.is_file(): ap.error(f"--table: no suite JSON at {path}")
        with atomic_write(path.with_suffix('.md'), 'w') as f: f.write(table(json.loads(path.read_text())))
        return
    only = [s.strip() for s in args.only.split(',') if s.strip()]
    if bad := [s for s in only if s not in SECTIONS]: ap.error(f"unknown section {bad[0]!r}; expected {list(SECTIONS)}")
    try: device = default_device(args.device)
    except (ValueError, RuntimeError) as e: ap.error(str(e))
    args.sizes = FULL | (CUDA if device.type == 'cuda' else {}) | (QUICK if args.quick else {})
    base = json.loads(Path(args.baseline).read_text()) if args.baseline and Path(args.baseline).is_file() else None
    if args.baseline and base is None: ap.error(f"--baseline: no suite JSON at {args.baseline}")
    out = dict(benchmark='suite', quick=args.quick, environment=environment(device), sizes=args.sizes)
    stem = 'suite_' + ('quick_' if args.quick else '') + device.type
    with tempfile.TemporaryDirectory() as tmp:
        for name in only:
            with Timer() as t: out[name] = SECTIONS[name](args, Path(tmp), device)
            out[name]['section_s'] = round(t.seconds, 1)
            print(f'{name}: {t.seconds:.0f} s', file=sys.stderr)
            if device.type == 'cuda' or base: out['targets'] = targets(out, base)
            save(out, device, Path(args.output_dir), stem)   # after each section: a run cut short keeps what it measured
    print(json.dumps(out))
    return out

def save(out, device, folder, stem):
    "Write the suite's JSON and markdown table so far, each atomically"
    out['peak_rss_mb'] = peak_rss_mb()
    out['cuda_peak_mb'] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == 'cuda' else None
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_write(folder/f'{stem}.json', 'w') as f: f.write(json.dumps(out, indent=2) + '\n')
    with atomic_write(folder/f'{stem}.md', 'w') as f: f.write(table(out))

if __name__ == '__main__': main()
