"""`hybrid-retrieval serve --preset toy` as a user starts it, its API over real HTTP, and its page in a real browser:
Debian's Chromium driven by Playwright (Playwright's own browser download cannot work offline).

Without a browser the page's tests skip, saying what to install; where `HYBRID_RETRIEVAL_BROWSER_TESTS=required` (CI sets
it) they fail (tests/browser.py). `HYBRID_RETRIEVAL_SCREENSHOT=FILE` also saves the page's screenshot there (the docs' picture)."""
import base64, json, os, shutil, signal, socket, subprocess, time, urllib.error, urllib.parse, urllib.request
from pathlib import Path
import pytest
from test_cli import cli, script
from browser import launch

def free_port()->int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def get(url:str)->tuple[int, dict]:
    "Status and JSON of a GET, errors included"
    try:
        with urllib.request.urlopen(url, timeout=60) as r: return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e: return e.code, json.loads(e.read())


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    "What a new user does: `hybrid-retrieval demo`, then `hybrid-retrieval serve --preset toy`; (base URL, gallery, tmp)"
    tmp = tmp_path_factory.mktemp('serve')
    env = {**os.environ, 'XDG_CACHE_HOME': str(tmp/'cache'), 'HF_HUB_OFFLINE': '1', 'OMP_NUM_THREADS': '1'}
    env.pop('HYBRID_RETRIEVAL_CONFIG', None)
    done = cli(env, 'demo', '--queries', '20', '--cross-queries', '5', '--figure', str(tmp/'demo.png'))
    assert done.returncode == 0, done.stderr
    port, log = free_port(), open(tmp/'server.log', 'w+')
    proc = subprocess.Popen([script(), 'serve', '--preset', 'toy', '--port', str(port)], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    base = f'http://127.0.0.1:{port}'
    deadline = time.time() + 180
    while True:
        try:
            if get(f'{base}/api/health')[0] == 200: break
        except OSError: pass
        assert proc.poll() is None and time.time() < deadline, Path(log.name).read_text()
        time.sleep(0.5)
    yield base, tmp/'cache'/'hybrid_retrieval'/'toy'/'heldout', tmp
    proc.terminate()   # uvicorn shuts down cleanly, then ends by the signal it got
    assert proc.wait(60) == -signal.SIGTERM, Path(log.name).read_text()
    assert 'Application shutdown complete' in Path(log.name).read_text()
    assert 'Traceback' not in Path(log.name).read_text()


def captions(gallery:Path, n:int=3)->list[dict]:
    return [json.loads(line) for line in (gallery/'captions.jsonl').read_text().splitlines()[:n]]


def test_the_api_over_http(server):
    base, gallery, _ = server
    status, health = get(f'{base}/api/health')
    assert status == 200 and health['gallery'] == 1000
    assert health['defaults'] == dict(k1=20, stage1='clip', k2=10, k_itm=None, fusion='weighted', mmr_lambda=None)
    first = captions(gallery)[0]
    status, found = get(f"{base}/api/search?{urllib.parse.urlencode({'q': first['caption']})}")
    assert status == 200 and len(found['results']) == 10 and found['fusion'] == 'weighted'
    assert first['image'] in [r['image_id'] for r in found['results']]
    status, bad = get(f"{base}/api/search?q=x&k1=5&k2=10")
    assert (status, bad) == (422, {'detail': 'k2 (10) must not exceed k1 (5)'})


@pytest.fixture(scope='module')
def client(server):
    "FastAPI's test client on the toy preset's engine, in this process"
    from fastapi.testclient import TestClient
    from hybrid_retrieval.config import load_config
    from hybrid_retrieval.build import build_engine
    from hybrid_retrieval.server import create_app
    import hybrid_retrieval.toy   # registers the preset
    saved = os.environ.get('XDG_CACHE_HOME')
    os.environ['XDG_CACHE_HOME'] = str(server[2]/'cache')
    try: engine = build_engine(load_config(preset='toy'))
    finally:
        if saved is None: del os.environ['XDG_CACHE_HOME']
        else: os.environ['XDG_CACHE_HOME'] = saved
    engine.config.show_progress = False
    with TestClient(create_app(engine, max_upload_bytes=100_000)) as c: yield c, engine


def test_the_api_on_the_toy_preset(server, client):
    c, engine = client
    _, gallery, _ = server
    first, second, _ = captions(gallery)
    got = c.get('/api/search', params={'q': first['caption']}).json()
    want = engine.text_to_image_hybrid_search(first['caption'])
    assert [r['image_id'] for r in got['results']] == [r.image_id for r in want.results] and want.fusion == 'weighted'
    up = c.post('/api/search/image', files={'image': ('mine.png', (gallery/second['image']).read_bytes())}).json()
    assert up['results'][0]['image_id'] == second['image'] and up['query'] == 'mine.png'


@pytest.mark.parametrize('method,url,kw,status,detail', [
    ('get', '/api/search', dict(params={'q': 'a red circle', 'k1': 5, 'k2': 10}), 422, 'k2 (10) must not exceed k1 (5)'),
    ('get', '/api/search', dict(params={'q': 'a red circle', 'fusion': 'max'}), 422,
     "fusion must be one of ['replace', 'weighted', 'rank_fusion', 'sum'], got 'max'"),
    ('get', '/api/search', dict(params={'q': 'a red circle', 'mmr_lambda': -1}), 422, 'mmr_lambda must be between 0 and 1, got -1.0'),
    ('get', '/api/search', dict(params={'q': ''}), 422, 'q is empty'),
    ('get', '/api/search', dict(params={'q': 'a' * 5000}), 422, 'q is too long: 5,000 characters (at most 1,000)'),
    ('get', '/api/search', dict(params={'q': 'x', 'rerank': 'maybe'}), 422,
     "rerank: Input should be a valid boolean, unable to interpret input, got 'maybe'"),
    ('get', '/api/search/image', dict(params={'id': 'missing.png'}), 404, "no image 'missing.png' in this index"),
    ('get', '/api/images/..%2Fcaptions.jsonl', {}, 404, "no image '../captions.jsonl' in this index"),
    ('post', '/api/search/image', dict(files={'image': ('a.png', b'GIF89a broken')}), 422,
     'cannot load image a.png: not an image file'),
    ('post', '/api/search/image', dict(files={'image': ('big.png', b'x' * 200_000)}), 413,
     'the upload is larger than the limit of 0.0954 MB'),
    ('post', '/api/search', dict(json={'q': 'x', 'k1': 'many'}), 422,
     "k1: Input should be a valid integer, unable to parse string as an integer, got 'many'"),
])
def test_bad_requests_on_the_toy_preset(client, method, url, kw, status, detail):
    reply = getattr(client[0], method)(url, **kw)
    assert (reply.status_code, reply.json()) == (status, {'detail': detail})


@pytest.fixture
def browser(needs_browser):
    "Headless Chromium from the system's package (the test skips without one: conftest.py)"
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


def top_card_is(page, image_id:str):
    "Wait until the first card of the results shows `image_id`"
    page.wait_for_function("id => document.querySelector('#results .card')?.dataset.imageId === id", arg=image_id,
                           timeout=60_000)


def drop(page, path:Path):
    "Drop the file at `path` on the page, as a user dragging it from their desktop"
    page.evaluate("""([b64, name]) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name, { type: 'image/png' }));
        document.dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true }));
    }""", [base64.b64encode(path.read_bytes()).decode(), path.name])


def test_the_page_in_a_browser(server, browser):
    base, gallery, tmp = server
    first, second, _ = captions(gallery)
    api_top = get(f"{base}/api/search?{urllib.parse.urlencode({'q': first['caption']})}")[1]['results'][0]['image_id']
    page = browser.new_page(viewport={'width': 1280, 'height': 900})
    errors = []
    page.on('pageerror', lambda e: errors.append(str(e)))
    page.goto(f'{base}/')
    page.wait_for_function("document.querySelector('#health').textContent.includes('1,000 images')")

    page.keyboard.press('/')                       # `/` focuses the query box
    page.keyboard.type(first['caption'])
    page.keyboard.press('Enter')
    top_card_is(page, api_top)
    assert page.locator('#results .card').count() == 10
    assert 'stage 1' in page.inner_text('#status') and 'stage 2' in page.inner_text('#status')
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query)['q'] == [first['caption']]   # kept in the URL
    assert 'CLIP #' in page.inner_text('#results .card >> nth=0')

    page.click('#results .card >> nth=0 >> summary')   # explain: the weighted fusion's two parts
    assert {'clip', 'cross'} <= set(page.inner_text('#results .card >> nth=0 >> details table').split())
    with page.expect_download() as download: page.click('#export')
    exported = json.loads(Path(download.value.path()).read_text())
    assert (exported['query'], exported['results'][0]['image_id']) == (first['caption'], api_top)
    page.click('#more')                             # ten more
    page.wait_for_function("document.querySelectorAll('#results .card').length === 20")

    page.check('#compare')                          # CLIP alone beside the hybrid
    page.wait_for_selector('#clip-results .card')
    assert page.locator('#clip-results .card').count() == 20
    page.screenshot(path=str(tmp/'serve.png'))
    assert (tmp/'serve.png').stat().st_size > 20_000
    if os.environ.get('HYBRID_RETRIEVAL_SCREENSHOT'): shutil.copy(tmp/'serve.png', os.environ['HYBRID_RETRIEVAL_SCREENSHOT'])

    page.set_input_files('#file', str(gallery/second['image']))   # upload a gallery picture: it comes back first
    top_card_is(page, second['image'])

    third_id = page.get_attribute('#results .card >> nth=2', 'data-image-id')
    page.click('#results .card >> nth=2 >> .like')                   # "more like this"
    top_card_is(page, third_id)
    assert f'like={urllib.parse.quote(third_id)}' in page.url

    drop(page, gallery/first['image'])                                 # an image dropped on the page
    top_card_is(page, first['image'])

    page.fill('#k1', '5'); page.fill('#k2', '10')   # a bad request shows the server's message
    page.fill('#q', 'a red circle'); page.press('#q', 'Enter')
    page.wait_for_selector('#error:not([hidden])')
    assert page.inner_text('#error') == 'k2 (10) must not exceed k1 (5)'
    assert errors == []


def test_a_shared_link_reloads_the_search(server, browser):
    base, gallery, _ = server
    first = captions(gallery)[0]
    page = browser.new_page()
    page.goto(f"{base}/?{urllib.parse.urlencode({'q': first['caption'], 'k2': 4, 'k_itm': 3, 'fusion': 'replace'})}")
    page.wait_for_selector('#results .card')
    assert page.locator('#results .card').count() == 4
    assert page.input_value('#q') == first['caption'] and page.input_value('#fusion') == 'replace'
    assert page.input_value('#k-itm') == '3' and 'ITC #' in page.inner_text('#results .card >> nth=0 >> .move')
    assert page.locator('#results .card .move[title^="past the ITM shortlist"]').count() == 1   # ITM re-scored 3
    page.fill('#q', '   '); page.press('#q', 'Enter')
    page.wait_for_selector('#error:not([hidden])')
    assert page.inner_text('#error') == 'q is empty'


def test_a_broken_gallery_image_is_named_by_its_id_not_the_servers_path(server, client):
    c, engine = client
    _, gallery, _ = server
    name = captions(gallery)[0]['image']
    saved = (gallery/name).read_bytes()
    try:
        (gallery/name).write_bytes(b'not a picture')
        reply = c.get('/api/search/image', params={'id': name})
    finally: (gallery/name).write_bytes(saved)
    assert (reply.status_code, reply.json()) == (422, {'detail': f'cannot load image {name}: not an image file'})
    assert str(gallery) not in reply.text


def test_a_client_that_hangs_up_mid_upload_is_one_log_line(server):
    base, _, tmp = server
    port = int(base.rsplit(':', 1)[1])
    with socket.create_connection(('127.0.0.1', port)) as s:
        s.sendall(b'POST /api/search/image HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n'
                  b'Content-Length: 50000\r\n\r\n--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n')
    log, deadline = tmp/'server.log', time.time() + 20
    while 'hung up' not in log.read_text() and time.time() < deadline: time.sleep(0.2)
    text = log.read_text()
    assert [l for l in text.splitlines() if 'hung up' in l] == [
        'hybrid-retrieval: WARNING: POST /api/search/image: the client hung up before its request was read'], text
    assert 'Traceback' not in text and 'ClientDisconnect' not in text, text


def rerank(base:str, body:dict)->tuple[int, dict]:
    "Status and JSON of a POST /v1/rerank"
    req = urllib.request.Request(f'{base}/v1/rerank', json.dumps(body).encode(), {'content-type': 'application/json'})
    try:
        with urllib.request.urlopen(req, timeout=60) as r: return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e: return e.code, json.loads(e.read())


def test_v1_rerank_over_http_equals_the_engines_stage_two(server, client):
    _, engine = client
    base, gallery, _ = server
    caption = captions(gallery)[0]['caption']
    want = engine.text_to_image_hybrid_search(caption, k2=5)
    ids = [x['image_id'] for x in want.candidates]
    order = sorted(range(len(ids)), key=lambda n: -want.candidates[n]['stage2_score'])
    status, by_id = rerank(base, {'query': caption, 'documents': ids})
    assert status == 200 and [r['index'] for r in by_id['results']] == order, by_id
    url = lambda i: 'data:image/png;base64,' + base64.b64encode((gallery/i).read_bytes()).decode()
    status, by_url = rerank(base, {'query': caption, 'documents': [{'image_url': {'url': url(i)}} for i in ids],
                                   'top_n': 3})
    assert status == 200 and [r['index'] for r in by_url['results']] == order[:3], by_url
    import httpx   # FastAPI's test client's HTTP library (a dev dependency) writes the multipart form
    files = [('documents', (f'{n}.png', (gallery/i).read_bytes())) for n,i in enumerate(ids)]
    by_upload = httpx.post(f'{base}/v1/rerank', data={'query': caption}, files=files, timeout=60).json()
    assert [r['index'] for r in by_upload['results']] == order, by_upload
    assert abs(by_id['results'][0]['relevance_score'] - want.candidates[order[0]]['stage2_score']) < 1e-5


@pytest.mark.parametrize('documents,status,detail', [
    ([{'image_url': {'url': 'http://127.0.0.1:1/secret.png'}}], 422,
     "documents[0]: only data: URLs are accepted (images are not fetched), got 'http://127.0.0.1:1/secret.png'"),
    (['x.png'] * 101, 422, 'documents holds 101; at most 100 per request'),
])
def test_v1_rerank_refusals_over_http(server, documents, status, detail):
    assert rerank(server[0], {'query': 'a red circle', 'documents': documents}) == (status, {'detail': detail})


def test_v1_rerank_refuses_an_image_above_the_upload_limit(client):
    big = base64.b64encode(b'\x89PNG' + b'x' * 200_000).decode()
    reply = client[0].post('/v1/rerank', json={'query': 'a red circle', 'documents': [{'image': big}]})
    assert (reply.status_code, reply.json()) == (413, {'detail': 'documents[0] is larger than the limit of 0.0954 MB'})
