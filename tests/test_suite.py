"The benchmark suite runs end to end (tiny models, small sizes), and the README's performance table is the suite's own."
import json, os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT/'benchmarks'/'suite.py'

def run_suite(*args, tmp):
    env = os.environ | {'OMP_NUM_THREADS': '2'}
    return subprocess.run([sys.executable, str(SUITE), *args, '--output-dir', str(tmp)], capture_output=True, text=True,
                          env=env, timeout=600)

def test_quick_suite_writes_json_and_table(tmp_path):
    done = run_suite('--quick', '--device', 'cpu', tmp=tmp_path)
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
