"The installed `hybrid-retrieval` command: the usage lines a new user starts with, offline on tiny models, and one-line errors."
import json, os, shutil, subprocess, sys
from pathlib import Path
import pytest
from hybrid_retrieval.tiny import save_tiny_blip2_itm, save_tiny_clip


@pytest.fixture(scope='module')
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('cli')
    clip, blip2 = save_tiny_clip(tmp/'clip'), save_tiny_blip2_itm(tmp/'blip2')
    config = tmp/'config.yaml'
    config.write_text(f'hybrid_search:\n  stage1: {{model: "local-dir:{clip}"}}\n  stage2: {{model: "{blip2}"}}\n'
                      '  performance: {show_progress: false}\n')
    environ = {**os.environ, 'HYBRID_RETRIEVAL_CONFIG': str(config), 'XDG_CACHE_HOME': str(tmp/'cache'), 'HF_HUB_OFFLINE': '1'}
    return tmp, environ


def script()->str:
    "The installed console script of this interpreter"
    beside = Path(sys.executable).parent/'hybrid-retrieval'   # where pip puts console scripts for this interpreter
    exe = str(beside) if beside.is_file() else shutil.which('hybrid-retrieval')
    assert exe, 'the hybrid-retrieval console script is not installed'
    return exe


def cli(environ, *args, cwd=None):
    return subprocess.run([script(), *args], capture_output=True, text=True, env=environ, cwd=cwd, timeout=300)


def test_index_then_the_readmes_usage_lines(env):
    tmp, environ = env
    done = cli(environ, 'index', '--sample', str(tmp/'sample'))
    assert done.returncode == 0, done.stderr
    assert f"indexed 36 images in {tmp/'cache'/'hybrid_retrieval'/'index'}" in done.stdout

    done = cli(environ, 'search', 'a dog playing', '--k1', '100', '--k2', '10')
    assert done.returncode == 0, done.stderr
    assert 'k1 (100) exceeds the gallery size (36): using 36' in done.stderr
    assert len(done.stdout.strip().splitlines()) == 14   # summary, the cascade's line (ITM on 16 of 36), header, 10 rows

    photo = sorted((tmp/'sample').glob('*.png'))[10]
    done = cli(environ, 'search', '--image', str(photo), '--k2', '20', '--format', 'json')
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert len(result['results']) == 20 and result['results'][0]['image_id'] == photo.name

    done = cli(environ, 'search', 'sunset beach', '--output', 'results.json', cwd=tmp)
    assert done.returncode == 0, done.stderr
    saved = json.loads((tmp/'results.json').read_text())
    assert saved['query'] == 'sunset beach' and len(saved['results']) == 10 and not saved['fallback']


def test_save_results_writes_json_in_the_cache(env):
    tmp, environ = env
    if not (tmp/'cache'/'hybrid_retrieval'/'index').exists(): cli(environ, 'index', '--sample', str(tmp/'sample'))
    done = cli(environ, 'search', 'a red circle', '--save-results')
    assert done.returncode == 0, done.stderr
    saved = Path(done.stderr.strip().splitlines()[-1].removeprefix('saved results to '))
    assert saved.parent == tmp/'cache'/'hybrid_retrieval'/'results' and json.loads(saved.read_text())['query'] == 'a red circle'


@pytest.mark.parametrize('args, code, message', [
    (('search', 'a dog', '--k2', '0'), 1, 'hybrid_search.stage2.k2 must be a positive integer, got 0'),
    (('search', 'a dog', '--k1', '5', '--k2', '10'), 1, 'hybrid_search.stage2.k2 (10) must not exceed hybrid_search.stage1.k1 (5)'),
    (('search', 'a dog', '--index', '/no/such/index'), 1, 'no index at /no/such/index'),
    (('search', 'a dog', '--config', '/no/such.yaml'), 1, 'configuration file not found: /no/such.yaml'),
    (('search', '--image', '/no/such.jpg'), 1, '/no/such.jpg: file not found'),
    (('search', 'a dog', '--k1', 'many'), 2, "argument --k1: invalid int value: 'many'"),
    (('frobnicate',), 2, "invalid choice: 'frobnicate'"),
])
def test_bad_input_gets_one_line_and_no_traceback(env, args, code, message):
    tmp, environ = env
    if not (tmp/'cache'/'hybrid_retrieval'/'index').exists(): cli(environ, 'index', '--sample', str(tmp/'sample'))
    done = cli(environ, *args)
    assert done.returncode == code
    assert message in done.stderr and 'Traceback' not in done.stderr
    if code == 1: assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_eval_writes_json_csv_and_figure(env):
    tmp, environ = env
    done = cli(environ, 'eval', '--sample', str(tmp/'evalset'), '--methods', 'clip,hybrid,cross,lavis', '--queries', '15',
               '--k-itm', '5', '--k-test', '8', '--output', str(tmp/'eval'/'report.json'))
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp/'eval'/'report.json').read_text())
    methods = ('clip', 'hybrid', 'cross', 'lavis')
    assert {(r['method'], r['direction']) for r in report['results']} == {(m, d) for m in methods for d in ('t2i', 'i2t')}
    assert {(r['method'], r.get('k_itm'), r.get('k_test')) for r in report['results'] if r['method'] in ('hybrid', 'lavis')} \
        == {('hybrid', 5, None), ('lavis', None, 8)}
    assert all(0 <= r['R@1'] <= r['R@5'] <= r['R@10'] <= 1 for r in report['results'])
    assert report['bi_encoder'].startswith('local-dir:') and report['versions']['torch']
    assert (tmp/'eval'/'report.csv').read_text().startswith('method,direction,queries,R@1')
    assert (tmp/'eval'/'report.png').read_bytes()[:4] == b'\x89PNG'


def cli_on_terminal(environ, *args):
    "Run the command with stderr on a pseudo-terminal, as in an interactive shell: (exit status, stdout, stderr)"
    import fcntl, pty, struct, termios
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', 24, 80, 0, 0))   # 80 columns: tqdm draws nothing in 0
    p = subprocess.Popen([script(), *args], stdout=subprocess.PIPE, stderr=slave, env=environ, text=True)
    os.close(slave)
    chunks = []
    while True:
        try: data = os.read(master, 65536)
        except OSError: break   # the command closed the terminal
        if not data: break
        chunks.append(data)
    out = p.communicate(timeout=300)[0]
    os.close(master)
    return p.returncode, out, b''.join(chunks).decode(errors='replace')


def test_progress_bars_on_a_terminal_only(env):
    tmp, environ = env
    config = tmp/'progress.yaml'   # progress on (the default); batches of 8: the sample's 36 images take 5
    config.write_text(f'hybrid_search:\n  stage1: {{model: "local-dir:{tmp/"clip"}", batch_size: 8}}\n'
                      '  stage2: {model: null}\n')
    args = lambda n: ['index', '--sample', str(tmp/f'sample_{n}'), '--index', str(tmp/f'index_{n}'),
                      '--config', str(config)]
    code, out, err = cli_on_terminal(environ, *args(1))
    assert code == 0 and 'indexed 36 images' in out, err
    assert 'encoding sample' in err and '5/5' in err, err          # the bar (batches of 8), on the terminal
    piped = cli(environ, *args(2))
    assert piped.returncode == 0 and 'encoding' not in piped.stderr, piped.stderr   # a log gets no bar
    code, out, err = cli_on_terminal(environ, *args(3), '--quiet')
    assert code == 0 and 'encoding' not in err, err


def test_a_siglip_shaped_stage_one_indexes_and_searches_the_toy_gallery(env, tmp_path):
    "A tiny model of SigLIP's shape (HF tokenizer in its folder, squash preprocessing, logit bias) end to end"
    from hybrid_retrieval.tiny import save_tiny_siglip
    from hybrid_retrieval.toy import toy_dataset
    _, environ = env
    siglip, toy = save_tiny_siglip(tmp_path/'siglip'), toy_dataset(tmp_path/'toy', n=40)
    model = ('--clip-model', f'local-dir:{siglip}', '--index', str(tmp_path/'idx'))
    done = cli(environ, 'index', '--captions', str(toy.root/'captions.jsonl'), *model)
    assert done.returncode == 0 and 'indexed 40 images' in done.stdout, done.stderr
    caption = toy.captions[toy.image_ids[0]][0]
    done = cli(environ, 'search', caption, *model, '--k1', '10', '--k2', '5', '--format', 'json')
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert len(got['results']) == 5 and not got['fallback'] and got['k1'] == 10
    assert {r['image_id'] for r in got['results']} <= set(toy.image_ids)


def test_gpu_settings_on_a_machine_without_one_say_so_and_run_the_cpu_paths(env, tmp_path):
    "A configuration written for a GPU (JPEGs decoded there, stage 2 in CUDA graphs, one-pass batches) still runs"
    tmp, environ = env
    gpu = tmp_path/'gpu.yaml'
    gpu.write_text((tmp/'config.yaml').read_text().replace('stage2: {', 'stage2: {cuda_graphs: graphs, one_pass: true, '
                                                           'gallery_on_device: true, ') + '  device: cpu\n')
    args = ('--config', str(gpu), '--index', str(tmp_path/'idx'))
    done = cli(environ, 'index', '--sample', str(tmp_path/'sample'), '--gpu-decode', *args)
    assert done.returncode == 0 and 'indexed 36 images' in done.stdout, done.stderr
    assert 'gpu_decode: no CUDA device; decoding images on the CPU' in done.stderr
    done = cli(environ, 'search', 'a red circle', '--k2', '3', '--format', 'json', *args)
    assert done.returncode == 0, done.stderr
    assert "cuda_graphs='graphs' needs a CUDA device" in done.stderr and 'Traceback' not in done.stderr
    assert len(json.loads(done.stdout)['results']) == 3 and not json.loads(done.stdout)['fallback']
