"""What every benchmark script measures the same way: latency percentiles, a process's memory, the CPU it ran on.

Scripts in this folder import it as `common` (run as `python benchmarks/NAME.py`, their folder is first on `sys.path`);
timing itself is `hybrid_retrieval.device.Timer`, which waits for the GPU before it reads the clock.
"""
import json, os, platform, resource
from pathlib import Path
import numpy as np


def percentiles(seconds, ps=(50, 95), digits:int=2)->dict:
    "`p50_ms`, `p95_ms`, ... of durations given in seconds, and how many there were"
    return {f'p{p}_ms': round(float(np.percentile(seconds, p)) * 1000, digits) for p in ps} | dict(runs=len(seconds))


def rss_mb(pid:int|str='self', key:str='VmRSS')->float:
    "Resident memory of process `pid` now (`key='VmHWM'`: its peak), this process by default, in MB"
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith(key + ':'): return int(line.split()[1]) / 1024
    raise RuntimeError(f'no {key} for process {pid}')


def peak_rss_mb()->float:
    "The largest resident memory this process has had, in MB"
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def cpu()->dict:
    "The CPU's model name and the flags that choose fast paths (bfloat16, AVX-512, AMX)"
    info = Path('/proc/cpuinfo').read_text() if Path('/proc/cpuinfo').exists() else ''
    lines = info.splitlines()
    model = next((l.split(':', 1)[1].strip() for l in lines if l.startswith('model name')), platform.machine())
    flags = next((l.split(':', 1)[1].split() for l in lines if l.startswith(('flags', 'Features'))), [])
    return dict(model=model, cores=os.cpu_count(),
                flags=sorted(f for f in flags if f.startswith(('avx', 'amx', 'fma', 'bf16', 'sve', 'asimd'))))


def write_result(result:dict, out:str|Path):
    "Write a benchmark's JSON to `out` (its folder made if need be) and print it"
    text = json.dumps(result, indent=1)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text + '\n')
    print(text)


def tiny_engine(tmp:Path, n:int, cross_encoder=None, **settings):
    "An engine over a sample gallery of `n` images: the tiny CLIP's index, `cross_encoder` (None: the tiny BLIP-2)"
    from hybrid_retrieval.bi_encoder import BiEncoder
    from hybrid_retrieval.cross_encoder import CrossEncoder
    from hybrid_retrieval.data import make_sample_dataset
    from hybrid_retrieval.hybrid_search import HybridSearchEngine, SearchConfig
    from hybrid_retrieval.index import build_index
    from hybrid_retrieval.tiny import save_tiny_blip2_itm, save_tiny_clip
    gallery = make_sample_dataset(tmp/'gallery', n=n)
    bi = BiEncoder(save_tiny_clip(tmp/'clip'), show_progress=False)
    ce = cross_encoder or CrossEncoder(save_tiny_blip2_itm(tmp/'blip2'))
    return HybridSearchEngine(bi, ce, build_index(bi, gallery)[0], gallery, SearchConfig(show_progress=False, **settings))
