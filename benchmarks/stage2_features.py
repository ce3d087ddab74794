"""Stage 2 at scale: compute the candidates' vision features on demand, or store them for the whole gallery?

BLIP-2's vision encoder (ViT-g/14) turns each image into 257 x 1408 features, 0.7 MB in float16. The cross-encoder
needs them for each of the `k1` candidates of every query. `stage2.features_dir` is the choice:

- null (the default): on demand. Features are computed when a candidate first needs them and kept in memory in a
  bounded LRU (`FeatureStore`, 2 GiB), so popular images are computed once; nothing grows with the gallery.
- a folder: stored. Each image's features are also written there (float16 safetensors) and read back later, so
  every image is computed once, ever, at 0.7 MB of disk per image.

This measures both costs on this machine with the real ViT-g architecture (random weights: the cost does not depend
on them): the vision encoder's time per image, and the time to read one image's stored features from disk, cold (not
in the page cache) and warm. Printed as one JSON object (and written to --out).

    python benchmarks/stage2_features.py            # about 3 minutes on two CPU cores, 5 GB of memory
"""
import argparse, json, os, tempfile, time
from pathlib import Path
from common import write_result   # this folder is first on sys.path: the script's own
import numpy as np, torch
from index_scale import drop_from_page_cache     # benchmarks/ is this script's folder, first on sys.path

HERE = Path(__file__).resolve().parent


def vision_seconds_per_image(batch:int, repeats:int)->tuple[float,tuple]:
    "Seconds per image of BLIP-2's ViT-g/14 forward pass (float32 on CPU, as the cross-encoder runs there)"
    from transformers import Blip2VisionConfig, Blip2VisionModel
    torch.manual_seed(0)
    model = Blip2VisionModel(Blip2VisionConfig()).eval()      # the defaults are ViT-g/14: 39 layers, width 1408
    pixels = torch.randn(batch, 3, 224, 224)
    times = []
    with torch.inference_mode():
        out = model(pixel_values=pixels).last_hidden_state     # warm-up, and the features' shape
        for _ in range(repeats):
            t = time.perf_counter(); model(pixel_values=pixels); times.append(time.perf_counter() - t)
    return float(np.median(times)) / batch, tuple(out.shape[1:])


def read_seconds_per_image(shape:tuple, n:int)->tuple[float,float,int]:
    "Seconds to read one image's stored features through `FeatureStore`, cold and warm, and the bytes per image"
    from hybrid_retrieval.feature_store import FeatureStore
    with tempfile.TemporaryDirectory(dir=HERE) as d:
        store = FeatureStore(disk_dir=d, model_id='benchmark')
        for i in range(n): store.put(f'img{i}', torch.randn(shape))
        files = list(store.disk_dir.glob('*.safetensors'))      # the store keeps one folder per model
        assert len(files) == n, len(files)
        size = sum(f.stat().st_size for f in files) // n
        passes = []
        for cold in (True, False):
            store.clear()                                        # the in-memory LRU: every read goes to the file
            if cold: drop_from_page_cache(store.disk_dir)
            t = time.perf_counter()
            for i in range(n): assert store.get(f'img{i}') is not None
            passes.append((time.perf_counter() - t) / n)
    return passes[0], passes[1], size


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--batch', type=int, default=4, help='images per vision forward pass')
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--stored', type=int, default=200, help='images whose features are written and read back')
    p.add_argument('--out', default=str(HERE/'results'/'stage2_features_cpu.json'))
    args = p.parse_args()
    compute_s, shape = vision_seconds_per_image(args.batch, args.repeats)
    cold_s, warm_s, size = read_seconds_per_image(shape, args.stored)
    result = dict(benchmark='stage2_features', machine=f'{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads',
                  model='BLIP-2 ViT-g/14 vision encoder (random weights, float32)', features_shape=list(shape),
                  bytes_per_image_stored=size, vision_ms_per_image=round(compute_s * 1e3, 1),
                  read_cold_ms_per_image=round(cold_s * 1e3, 2), read_warm_ms_per_image=round(warm_s * 1e3, 2),
                  compute_over_cold_read=round(compute_s / cold_s, 1),
                  stored_gb_per_million_images=round(size * 1e6 / 1e9, 1))
    write_result(result, args.out)


if __name__ == '__main__': main()
