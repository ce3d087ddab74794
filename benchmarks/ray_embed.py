"""Embedding throughput of the two `index` engines, side by side: in this process, and the Ray Data pipeline.

A generated gallery (the sample shapes, 224 x 224 PNG files) is embedded by open_clip's ViT-B/32 (random weights:
the cost does not depend on them), once by `build_index` (a DataLoader and one model) and once by
`index_with_ray` (decoding tasks and embedding actors on a local Ray), and the two indexes are compared. Printed as one
JSON object (and written to --out): images per second for each, the ratio, the Ray run's spilled bytes and shards,
and the largest difference between the two engines' embeddings.

    python benchmarks/ray_embed.py                  # 1,000 images, about 3 minutes on two CPU cores
"""
import argparse, json, os, tempfile, time
from functools import partial
from pathlib import Path
from common import write_result   # this folder is first on sys.path: the script's own
import numpy as np

HERE = Path(__file__).resolve().parent


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--images', type=int, default=1000)
    p.add_argument('--model', default='ViT-B-32')
    p.add_argument('--shard-size', type=int, default=250)
    p.add_argument('--out', default=str(HERE/'results'/'ray_embed_cpu.json'))
    args = p.parse_args()
    import open_clip, torch
    from hybrid_retrieval.bi_encoder import BiEncoder, save_open_clip
    from hybrid_retrieval.data import make_sample_dataset
    from hybrid_retrieval.index import build_index
    from hybrid_retrieval.scale import index_with_ray, start_ray
    import ray
    with tempfile.TemporaryDirectory(prefix='ray_embed-') as work:
        work = Path(work)
        gallery = make_sample_dataset(work/'gallery', n=args.images, size=224)
        cfg = open_clip.get_model_config(args.model)     # random weights, saved once: every worker loads the same
        torch.manual_seed(0)
        weights = save_open_clip(open_clip.CLIP(**cfg), cfg, work/'clip')
        make = partial(BiEncoder, f'local-dir:{weights}', show_progress=False)
        t = time.perf_counter(); local, _ = build_index(make(), gallery, index_type='flat')
        local_s = time.perf_counter() - t
        start_ray()                          # started before the clock, as a cluster would be
        t = time.perf_counter()
        on_ray, report = index_with_ray(make, gallery, work/'index', 'flat', shard_size=args.shard_size,
                                        show_progress=False)
        ray_s = time.perf_counter() - t
        ray.shutdown()
        diff = float(np.abs(on_ray.vectors(on_ray.ids) - local.vectors(local.ids)).max())
    result = dict(benchmark='ray_embed', machine=f'{os.cpu_count()} CPUs', model=f'{args.model} (random weights)',
                  images=args.images, in_process_images_per_s=round(args.images / local_s, 1),
                  ray_images_per_s=round(args.images / ray_s, 1), ray_over_in_process=round(local_s / ray_s, 2),
                  ray_embed_s=round(report.embed_s, 1), shards=report.shards, spilled_bytes=report.spilled_bytes,
                  same_ids=on_ray.ids == local.ids, max_abs_difference=diff)
    write_result(result, args.out)


if __name__ == '__main__': main()
