"""Figures for GPUs this project has not measured, derived from a measured GPU's suite run by the hardware's ratios.

    python benchmarks/derive_gpu.py [--from SUITE_CUDA_JSON] [--output benchmarks/results/derived_gpus.json]

Every figure here is DERIVED, not measured. A latency on a slower card is taken as the measured one times the larger of
two ratios, arithmetic and memory bandwidth; a throughput, divided by it. Stage 2's arithmetic is the Q-Former's, which
runs in bfloat16 where a card has it and in float32 beside float16 elsewhere (T4, P100: float16 overflows there), so its
ratio uses each card's bfloat16 tensor or float32 rate; stage 1 uses the half-precision rate. Where the measured GPU
spent its time on kernel launches and Python rather than arithmetic (a launch costs the same on any card), this
over-estimates the slower card's time: it is an upper bound. Stage 2's lower bound is its arithmetic at the card's peak
(BLIP-2 ITM on 100 candidates: ~1.6 TFLOP, from the Q-Former's size: 12 layers of width 768 over 32 queries and ~20
text tokens, 6 of them cross-attending to 257 image tokens of width 1,408 -- ~16 GFLOP a pair). CLIP embedding is
bound by JPEG decoding on the CPU cores, not by the GPU, so it is not derived. Peak figures: NVIDIA's data sheets.
"""
import argparse, json, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from hybrid_retrieval.files import atomic_write

GPUS = {   # dense half TFLOPS (P100: no tensor cores); the Q-Former's: bfloat16 or float32; bandwidth GB/s; memory GB
    'NVIDIA H200': dict(tflops=989, qformer_tflops=989, gbps=4800, memory_gb=141),
    'NVIDIA A100 80GB': dict(tflops=312, qformer_tflops=312, gbps=2039, memory_gb=80),
    'Tesla T4': dict(tflops=65, qformer_tflops=8.1, gbps=320, memory_gb=16),
    'Tesla P100-PCIE-16GB': dict(tflops=18.7, qformer_tflops=9.3, gbps=732, memory_gb=16),
}
STAGE2_TFLOP = 1.6   # BLIP-2 ITM, 100 candidates (see above)
MODEL_GB = 7         # BLIP-2 ITM and CLIP in half precision, with room for their passes (the Kaggle guide's 5-7 GB)

def derive(run:dict, target:str)->dict:
    "The figures of `run` (a suite JSON) carried over to the GPU `target` by `GPUS`' ratios, with stage 2's lower bound"
    src, dst = GPUS[run['environment']['gpu']], GPUS[target]
    bandwidth = src['gbps'] / dst['gbps']
    ratio = max(src['qformer_tflops'] / dst['qformer_tflops'], bandwidth)   # stage 2
    half = max(src['tflops'] / dst['tflops'], bandwidth)                      # stage 1
    g = run.get('gpu_paths') or {}   # the best configuration measured: the GPU paths where the run has them
    rows = g.get('stage2', {}).get('rows') or [r for r in run['stage2']['blip2']['rows'] if r['dtype'] != 'float32'
                                               and r['batch'] == 'auto' and r['stored'] == 'features']
    s2 = min(rows, key=lambda r: r['p50_ms'])
    runs = list(g.get('e2e', {}).values()) + ([run['e2e']] if 'e2e' in run else [])
    e2e, qps = min(runs, key=lambda e: e['query']['p50_ms']), max(e['queries_per_s'] for e in runs)
    s1 = run.get('stage1', {}).get('flat')
    up = lambda ms, r=ratio: round(ms * r, 1)
    return dict(gpu=target, derived_from=run['environment']['gpu'], measured_on=run['environment']['date'],
                stage2_ratio=round(ratio, 1), stage1_ratio=round(half, 1), derived=True,
                stage2_blip2_100_p50_ms=dict(upper=up(s2['p50_ms']),
                                             lower=round(STAGE2_TFLOP / dst['qformer_tflops'] * 1000, 1)),
                stage2_blip2_100_p95_ms=dict(upper=up(s2['p95_ms'])),
                query_end_to_end_p50_ms=dict(upper=up(e2e['query']['p50_ms'])),
                query_end_to_end_p95_ms=dict(upper=up(e2e['query']['p95_ms'])),
                batched_queries_per_s=dict(lower=round(qps / ratio, 1)),
                stage1_flat_p50_ms=dict(upper=up(s1['p50_ms'], half)) if s1 else None,
                gallery_on_device=dict(blip2_mb_per_image=0.72, model_gb=MODEL_GB,   # what `device_budget` would keep
                                       images=int((dst['memory_gb'] - MODEL_GB) * 1000 / 2 / 0.72)))

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    results = Path(__file__).parent/'results'
    ap.add_argument('--from', dest='source', default=str(results/'suite_cuda.json'))
    ap.add_argument('--output', default=str(results/'derived_gpus.json'))
    args = ap.parse_args(argv)
    run = json.loads(Path(args.source).read_text())
    if run['environment'].get('gpu') not in GPUS: ap.error(f"no hardware figures for {run['environment'].get('gpu')!r}")
    out = dict(note='DERIVED from a measured run by hardware ratios, not measured', source=Path(args.source).name,
               gpus=[derive(run, g) for g in GPUS if g != run['environment']['gpu']])
    with atomic_write(Path(args.output), 'w') as f: f.write(json.dumps(out, indent=2) + '\n')
    print(json.dumps(out, indent=2))

if __name__ == '__main__': main()
