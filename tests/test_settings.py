"""One declaration per setting: a setting added to `SETTINGS` reaches every surface, checked by the one check.

The chapters show each surface on its own; this test registers one setting and finds it on all four at once, through
the installed entry points: the YAML file (`load_config`), the command's `--help` and flags (`main`), the server's
OpenAPI document and query string (`create_app`), and the engine (`SearchConfig`, `variant`)."""
import contextlib, io
import pytest
from fastapi.testclient import TestClient
from hybrid_retrieval.settings import Setting, register_setting, unregister_setting
from hybrid_retrieval.config import load_config, ConfigError, to_yaml
from hybrid_retrieval.hybrid_search import SearchConfig, HybridSearchEngine
from hybrid_retrieval.cli import main
from hybrid_retrieval.server import create_app
from hybrid_retrieval.bi_encoder import BiEncoder
from hybrid_retrieval.data import make_sample_dataset
from hybrid_retrieval.index import build_index
from hybrid_retrieval.tiny import save_tiny_clip

K_PROBE = Setting('k_probe', 'stage2.k_probe', 'int|None', None, 'candidates a probe re-scores', engine=True,
                cli=('search',), query=True)


@pytest.fixture
def k_probe():
    register_setting(K_PROBE)
    yield K_PROBE
    unregister_setting('k_probe')


@pytest.fixture(scope='module')
def engine(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('settings')
    sample = make_sample_dataset(tmp/'sample', n=8)
    bi = BiEncoder(save_tiny_clip(tmp/'clip'), show_progress=False)
    return HybridSearchEngine(bi, None, build_index(bi, sample)[0], sample, SearchConfig(k1=8, k2=3, show_progress=False))


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), contextlib.suppress(SystemExit):
        code = main([str(a) for a in argv])
    return out.getvalue(), err.getvalue()


def test_the_yaml_file_reads_writes_and_checks_it(k_probe, tmp_path):
    (tmp_path/'c.yaml').write_text('hybrid_search: {stage2: {k_probe: 30}}\n')
    config = load_config(tmp_path/'c.yaml')
    assert config.k_probe == 30 and 'k_probe: 30' in to_yaml(config)
    (tmp_path/'bad.yaml').write_text('hybrid_search: {stage2: {k_probe: 0}}\n')
    with pytest.raises(ConfigError, match='hybrid_search.stage2.k_probe must be a positive integer, got 0'):
        load_config(tmp_path/'bad.yaml')


def test_the_command_line_has_its_flag(k_probe, tmp_path):
    out, _ = run('search', '--help')
    assert '--k-probe K_PROBE' in out and 'candidates a probe re-scores (hybrid_search.stage2.k_probe)' in ' '.join(out.split())
    _, err = run('search', 'x', '--k-probe', '0', '--index', tmp_path/'none')
    assert err.strip() == 'hybrid-retrieval: error: hybrid_search.stage2.k_probe must be a positive integer, got 0'


def test_the_server_documents_and_checks_it(k_probe, engine):
    with TestClient(create_app(engine)) as client:
        doc = client.get('/openapi.json').json()
        params = {p['name']: p for p in doc['paths']['/api/search']['get']['parameters']}
        assert params['k_probe']['description'] == 'candidates a probe re-scores'
        assert 'k_probe' in doc['components']['schemas']['SearchBody']['properties']
        bad = client.get('/api/search', params={'q': 'a red circle', 'k_probe': 0})
        assert (bad.status_code, bad.json()) == (422, {'detail': 'k_probe must be a positive integer, got 0'})
        assert client.get('/api/search', params={'q': 'a red circle', 'k_probe': 5}).status_code == 200
        assert client.post('/api/search', json={'q': 'a red circle', 'k_probe': 5}).status_code == 200
        assert client.get('/api/health').json()['defaults']['k_probe'] is None


def test_the_engine_holds_it(k_probe, engine):
    assert SearchConfig(k_probe=7).k_probe == 7 and engine.variant(k_probe=4).config.k_probe == 4
    with pytest.raises(ValueError, match='k_probe must be a positive integer, got 0'): SearchConfig(k_probe=0)


def test_without_the_declaration_every_surface_refuses_it(engine, tmp_path):
    with pytest.raises(TypeError, match="SearchConfig got an unknown setting 'k_probe'; accepted: k1, stage1, k2"):
        SearchConfig(k_probe=7)
    (tmp_path/'c.yaml').write_text('hybrid_search: {stage2: {k_probe: 30}}\n')
    with pytest.raises(ConfigError, match='unknown key hybrid_search.stage2.k_probe'): load_config(tmp_path/'c.yaml')
    assert '--k-probe' not in run('search', '--help')[0]
    with TestClient(create_app(engine)) as client:
        assert client.post('/api/search', json={'q': 'x', 'k_probe': 5}).status_code == 422
