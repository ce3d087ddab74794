"""The notebooks users run elsewhere, run here as they run them: the Kaggle evaluation notebook top to bottom on a
Kaggle-shaped stand-in (`toy.kaggle_standin`) with the toy models, every cell but the package install."""
import json, os, subprocess, sys
from pathlib import Path
import pytest, yaml
from hybrid_retrieval.data import KAGGLE_INPUT_VAR
from hybrid_retrieval.toy import kaggle_standin, TOY_MODELS

ROOT = Path(__file__).resolve().parent.parent
KAGGLE_NB = ROOT/'nbs'/'tutorials'/'kaggle_flickr30k_eval.ipynb'

def run(notebook:Path, cwd:Path, env:dict)->subprocess.CompletedProcess:
    "Run `notebook` with tests/run_notebook.py in `cwd`, its outputs saved as out.ipynb there"
    return subprocess.run([sys.executable, str(ROOT/'tests'/'run_notebook.py'), str(notebook), '--save', 'out.ipynb'],
                          cwd=cwd, env=os.environ | env, capture_output=True, text=True, timeout=1800)

def outputs(nb_path:Path)->str:
    "Every text output of a saved notebook"
    cells = json.loads(nb_path.read_text())['cells']
    return '\n'.join(''.join(o.get('text', '')) + ''.join(o.get('data', {}).get('text/plain', ''))
                     for c in cells for o in c.get('outputs', []))

@pytest.fixture(scope='module')
def kaggle_env(tmp_path_factory):
    "A Kaggle-shaped input folder and the toy models, given through the keys a user sets"
    tmp = tmp_path_factory.mktemp('kaggle')
    settings = {'hybrid_search': {   # the notebook's SETTINGS, with the toy models in place of the hub's
        'stage1': {'model': f"local-dir:{TOY_MODELS/'clip'}", 'pretrained': None},
        'stage2': {'model': str(TOY_MODELS/'cross_encoder'), 'features_dir': 'features'}}}
    (tmp/'toy_models.yaml').write_text(yaml.safe_dump(settings))
    return tmp, {KAGGLE_INPUT_VAR: str(kaggle_standin(tmp/'input')),
                 'HYBRID_RETRIEVAL_CONFIG': str(tmp/'toy_models.yaml'),
                 'XDG_CACHE_HOME': str(tmp/'cache'), 'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS', '2')}

def test_kaggle_notebook_runs_on_the_standin(kaggle_env):
    tmp, env = kaggle_env
    (work := tmp/'working').mkdir()    # plays /kaggle/working, the notebook's folder on Kaggle
    r = run(KAGGLE_NB, work, env)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "skipped ['#| hub']" in r.stdout, r.stdout   # only the install
    out = outputs(work/'out.ipynb')
    assert "{'test': 50, 'val': 25, 'train': 125}" in out, out[:2000]   # the stand-in's Karpathy splits
    report = json.loads((work/'flickr30k_1k_report.json').read_text())
    found = (report['dataset'], report['n_images'], report['n_captions'])
    assert found == ('flickr30k/test', 50, 250), found
    rows = {(r['method'], r['direction']): r for r in report['results']}
    assert set(rows) == {(m, d) for m in ('clip', 'hybrid') for d in ('t2i', 'i2t')}, set(rows)
    assert rows['hybrid', 't2i']['queries'] == 250 and rows['hybrid', 't2i']['R@10'] > 0.5, rows['hybrid', 't2i']
    assert (work/'features').is_dir()   # the cross-encoder's stored features, where the settings keep them

def test_a_broken_cell_fails(kaggle_env, tmp_path):
    tmp, env = kaggle_env
    nb = json.loads(KAGGLE_NB.read_text())
    cell = next(c for c in nb['cells'] if ''.join(c['source']).startswith('flickr = load_flickr30k()'))
    cell['source'] = ['flickr = load_flickr30k(split_file="missing.json")\n']
    (tmp_path/'broken.ipynb').write_text(json.dumps(nb))
    r = run(tmp_path/'broken.ipynb', tmp_path, env)
    assert r.returncode == 1 and 'Flickr30k file not found: missing.json' in r.stderr, r.stderr[-2000:]


def test_kaggle_settings_are_a_valid_configuration(monkeypatch):
    "The notebook's own SETTINGS (what a Kaggle user runs, replaced here by $HYBRID_RETRIEVAL_CONFIG) validate"
    cells = [''.join(c['source']) for c in json.loads(KAGGLE_NB.read_text())['cells'] if c['cell_type'] == 'code']
    settings = next(c for c in cells if c.startswith('SETTINGS = '))
    monkeypatch.delenv('HYBRID_RETRIEVAL_CONFIG', raising=False)
    ns = {}
    exec(next(c for c in cells if c.startswith('import os')) + '\n' + settings, ns)
    config = ns['config']
    assert (config.clip_model, config.pretrained) == ('ViT-B-32', 'openai')
    assert (config.cross_model, config.features_dir) == ('Salesforce/blip2-itm-vit-g-coco', 'features')
