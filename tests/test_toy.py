"The offline toy world through the installed command: `demo`, then `search`, `index` and `eval` with `--preset toy`."
import json, os
from pathlib import Path
import pytest
from test_cli import cli


@pytest.fixture(scope='module')
def environ(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('toy')
    env = {**os.environ, 'XDG_CACHE_HOME': str(tmp/'cache'), 'HF_HUB_OFFLINE': '1'}
    env.pop('HYBRID_RETRIEVAL_CONFIG', None)
    return tmp, env


def test_demo_prints_the_table_and_writes_the_grid(environ):
    tmp, env = environ
    done = cli(env, 'demo', '--queries', '20', '--cross-queries', '10', '--format', 'json', '--figure', str(tmp/'grid.png'))
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [(r['method'], r['queries']) for r in rows] == [('clip', 20), ('hybrid', 20), ('cross', 10)]
    assert all(0 <= r['R@1'] <= r['R@5'] <= r['R@10'] <= 100 for r in rows)
    assert (tmp/'grid.png').stat().st_size > 10_000
    assert 'try: hybrid-retrieval search --preset toy' in done.stderr

    done = cli(env, 'demo', '--queries', '20', '--cross-queries', '5')   # the default table format
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('toy world, text -> image: 1,000 held-out pictures; captions as queries: 20 for CLIP and the hybrid, 5 for the cross-encoder alone')


def test_the_preset_searches_the_demos_index(environ):
    tmp, env = environ
    gallery = tmp/'cache'/'hybrid_retrieval'/'toy'/'heldout'
    if not (gallery/'captions.jsonl').is_file(): assert cli(env, 'index', '--preset', 'toy').returncode == 0
    first = json.loads((gallery/'captions.jsonl').read_text().splitlines()[0])
    done = cli(env, 'search', first['caption'], '--preset', 'toy', '--format', 'json')
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)['results']
    assert len(results) == 10 and first['image'] in [r['image_id'] for r in results]


def test_index_and_eval_with_the_preset(environ):
    tmp, env = environ
    done = cli(env, 'index', '--preset', 'toy')
    assert done.returncode == 0, done.stderr
    assert f"indexed 1000 images in {tmp/'cache'/'hybrid_retrieval'/'toy'/'index'}" in done.stdout
    done = cli(env, 'eval', '--preset', 'toy', '--methods', 'clip,hybrid', '--directions', 't2i', '--queries', '30', '--format', 'json')
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report['n_images'] == 1000 and [r['method'] for r in report['results']] == ['clip', 'hybrid']


def test_unknown_preset_is_one_line(environ):
    tmp, env = environ
    done = cli(env, 'search', 'a red circle', '--preset', 'giant')
    assert done.returncode == 1 and done.stderr.strip() == "hybrid-retrieval: error: unknown preset 'giant'; available presets: toy"
