"Stage 2 against the installed package: a gallery's features persist across processes; the re-rank benchmark runs at small N."
import json, os, subprocess, sys
from pathlib import Path
import pytest
from hybrid_retrieval.data import make_sample_dataset
from hybrid_retrieval.tiny import save_tiny_blip2_itm

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, 'HF_HUB_OFFLINE': '1'}

SCORE = """
import json, sys
from hybrid_retrieval.cross_encoder import CrossEncoder
from hybrid_retrieval.data import load_captions_file
ds = load_captions_file(sys.argv[2])
ce = CrossEncoder(sys.argv[1], features_dir=sys.argv[3], dataset=ds)
scores = ce.score('a red circle', ds.image_ids)
print(json.dumps(dict(scores=scores.tolist(), hits=ce.store.hits, misses=ce.store.misses)))
"""

def run_score(*args):
    out = subprocess.run([sys.executable, '-c', SCORE, *map(str, args)], capture_output=True, text=True, env=ENV, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_features_persist_across_runs(tmp_path):
    ds = make_sample_dataset(tmp_path/'sample', n=10)
    model = save_tiny_blip2_itm(tmp_path/'blip2')
    first = run_score(model, tmp_path/'sample'/'captions.jsonl', tmp_path/'features')
    second = run_score(model, tmp_path/'sample'/'captions.jsonl', tmp_path/'features')
    assert (first['hits'], first['misses']) == (0, len(ds))
    assert (second['hits'], second['misses']) == (len(ds), 0)
    assert max(abs(a - b) for a, b in zip(first['scores'], second['scores'])) < 2e-3   # float16 on disk


def test_rerank_benchmark_prints_its_json():
    out = subprocess.run([sys.executable, str(ROOT/'benchmarks'/'rerank.py'), '--arch', 'blip', '--candidates', '2'],
                         capture_output=True, text=True, env=ENV, timeout=600)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ('arch', 'candidates', 'device', 'uncached_s', 'cached_cold_s', 'cached_warm_s', 'speedup_warm', 'max_abs_diff'):
        assert key in result
    assert (result['arch'], result['candidates']) == ('blip', 2)
    assert result['max_abs_diff'] <= 1e-4


def test_query_cache_benchmark_prints_its_json():
    out = subprocess.run([sys.executable, str(ROOT/'benchmarks'/'query_cache.py'), '--gallery', '30', '--queries', '3', '--k1', '10', '--k2', '5'],
                         capture_output=True, text=True, env=ENV, timeout=600)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result['identical'] is True and result['first_ms'] > 0 and result['repeat_ms'] > 0
