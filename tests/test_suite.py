"The benchmark suite runs end to end (tiny models, small sizes), and the README's performance table is the suite's own."
import json, os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT/'benchmarks'/'suite.py'

def run_suite(*args, tmp):
    env = os.environ | {'OMP_NUM_THREADS': '2'}
    return subprocess.run([sys.executable, str(SUITE), *args, '--output-dir', str(tmp)], capture_output=True, text=True,
                          env=env, timeout=600)

BASELINE = ROOT/'benchmarks'/'results'/'suite_cuda_2026-11-27.json'

def test_quick_suite_writes_json_and_table(tmp_path):
    done = run_suite('--quick', '--device', 'cpu', '--baseline', str(BASELINE), tmp=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path/'suite_quick_cpu.json').read_text())
    assert json.loads(done.stdout.strip().splitlines()[-1]) == result
    assert result['environment']['device'] == 'cpu' and result['quick'] is True
    for arch in ('blip2', 'blip'):
        rows = result['stage2'][arch]['rows']
        assert {(r['stored'], r['batch']) for r in rows} == {(s, b) for s in ('features', 'keys+values') for b in (4, 'auto')}
        kv, plain = (next(r for r in rows if r['stored'] == s) for s in ('keys+values', 'features'))
        assert kv['store_bytes_per_image'] > plain['store_bytes_per_image']    # the packs hold more than the features
    e2e = result['e2e']
    assert e2e['query']['runs'] == result['sizes']['e2e_queries'] and e2e['queries_per_s'] > 0
    table = (tmp_path/'suite_quick_cpu.md').read_text()
    assert table.count(' candidates, float32, batch ') == 8 and '| batched text queries (2 at once) |' in table
    gpu = result['gpu_paths']   # on a CPU: fixed shapes beside eager, the same scores; both decoders, the same embeddings
    assert [r['mode'] for r in gpu['stage2']['rows']] == ['eager', 'static']
    assert all(r['max_abs_diff_vs_eager'] < 1e-5 for r in gpu['stage2']['rows'])
    assert set(gpu['e2e']) == {'host', 'static'} and gpu['embed']['min_cosine'] > 0.999
    assert 'cuda_graphs static, p50 / p95' in table and 'decoded by DataLoader workers / by decode_batch' in table

    base = json.loads(BASELINE.read_text())   # the targets table: the earlier run's figures beside this one's
    earlier = {t['what']: t['earlier'] for t in result['targets']}
    assert earlier['text query end to end, p50 (ms)'] == base['e2e']['query']['p50_ms']
    assert earlier['stage 2: BLIP-2 ITM, 100 candidates, p50 (ms)'] == min(
        r['p50_ms'] for r in base['stage2']['blip2']['rows'] if r['dtype'] == 'bfloat16' and r['batch'] == 'auto'
        and r['stored'] == 'features')
    assert earlier['batched text queries (queries/s)'] == base['e2e']['queries_per_s']
    assert earlier['CLIP embedding with JPEG decoding (images/s)'] == base['embed']['images_per_s']
    assert all(t['met'] is None for t in result['targets'])   # a quick run measures nothing
    assert '| text query end to end, p50 (ms) | <= 20 |' in table

def test_unknown_section_is_one_line(tmp_path):
    done = run_suite('--only', 'stage3', tmp=tmp_path)
    assert done.returncode == 2 and "unknown section 'stage3'" in done.stderr
    assert 'Traceback' not in done.stderr
    done = run_suite('--table', str(tmp_path/'missing.json'), tmp=tmp_path)
    assert done.returncode == 2 and 'no suite JSON at' in done.stderr and 'Traceback' not in done.stderr

def test_readme_table_is_the_suites():
    "The README shows the committed CPU run's table exactly (rerun the suite, then paste its .md into nbs/index.ipynb)"
    table = (ROOT/'benchmarks'/'results'/'suite_cpu.md').read_text()
    assert table in (ROOT/'README.md').read_text()
    cuda = ROOT/'benchmarks'/'results'/'suite_cuda.md'
    if cuda.exists(): assert cuda.read_text() in (ROOT/'README.md').read_text()

def test_derived_gpu_figures_are_the_scripts(tmp_path):
    "The Kaggle guide's derived T4 / P100 figures are derive_gpu.py's output on the committed H200 run"
    done = subprocess.run([sys.executable, str(ROOT/'benchmarks'/'derive_gpu.py'), '--from', str(BASELINE),
                           '--output', str(tmp_path/'derived.json')], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path/'derived.json').read_text() == (ROOT/'benchmarks'/'results'/'derived_gpus.json').read_text()
    base, derived = json.loads(BASELINE.read_text()), json.loads((tmp_path/'derived.json').read_text())
    t4 = next(g for g in derived['gpus'] if g['gpu'] == 'Tesla T4')
    best = min(r['p50_ms'] for r in base['stage2']['blip2']['rows']
               if r['dtype'] == 'bfloat16' and r['batch'] == 'auto' and r['stored'] == 'features')
    assert t4['derived'] and abs(t4['stage2_blip2_100_p50_ms']['upper'] - best * 989 / 8.1) < 0.2
    assert t4['stage2_blip2_100_p50_ms']['lower'] < t4['stage2_blip2_100_p50_ms']['upper']
