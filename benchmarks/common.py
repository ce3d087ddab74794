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
