"""Hostile inputs and faults, as a user meets them: images Pillow refuses or mishandles, links out of a gallery, text files
as people save them, Karpathy JSON of the wrong shape, configuration bombs, damaged indexes, output names that collide,
leftovers of killed runs, mistakes that must fail before any model loads, and the thread policy.

Each command case runs `main` in this process (the console script's own code) and asserts the exit status, a one-line
message naming the file / key / record, no traceback, and that nothing the user had was damaged."""
import contextlib, hashlib, io, json, os, shutil, struct, subprocess, sys, zlib
from pathlib import Path
import numpy as np, pytest, torch
from PIL import Image
from hybrid_retrieval.cli import main
from hybrid_retrieval.device import usable_cores
from hybrid_retrieval.data import make_sample_dataset
from hybrid_retrieval.bi_encoder import BiEncoder
from hybrid_retrieval.tiny import save_tiny_clip, save_tiny_blip2_itm


# ---------------------------------------------------------------------------------------------------------- helpers
def run(*argv):
    "(exit status, stdout, stderr) of `hybrid-retrieval *argv`, run in this process"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def fails(code, err, *names):
    "Exit 1, one line on stderr that names each of `names`, no traceback"
    assert code == 1, err
    assert 'Traceback' not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith('hybrid-retrieval: error: '), err
    for name in names: assert str(name) in err, (name, err)


def snapshot(folder:Path)->dict:
    "Every file under `folder` with its SHA-256 and mode: equal snapshots mean nothing was damaged"
    return {p.relative_to(folder).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
            for p in sorted(folder.rglob('*')) if p.is_file()}


def dead_pid()->int:
    "The pid of a process that has exited"
    return int(subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True,
                              text=True).stdout)


def png_header(w, h)->bytes:
    "A tiny PNG that declares w x h pixels and holds almost none"
    chunk = lambda kind, data: struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0)) + chunk(b'IEND', b'')


@pytest.fixture(scope='module')
def env(tmp_path_factory):
    "Tiny models, a configuration naming them, a 12-image gallery and its index; one with models that do not exist"
    tmp = tmp_path_factory.mktemp('hostile')
    clip, blip2 = save_tiny_clip(tmp/'clip'), save_tiny_blip2_itm(tmp/'blip2')
    make_sample_dataset(tmp/'gallery', n=12)
    cfg = tmp/'config.yaml'
    cfg.write_text(f'hybrid_search:\n  stage1: {{model: "local-dir:{clip}", k1: 12}}\n  stage2: {{model: "{blip2}", k2: 5}}\n'
                   f'  index: {{path: "{tmp/"index"}", embedding_cache: "{tmp/"emb"}"}}\n'
                   '  performance: {show_progress: false}\n')
    (tmp/'nomodels.yaml').write_text('hybrid_search:\n  stage1: {model: "local-dir:/no/such/clip"}\n'
                                     '  stage2: {model: /no/such/blip2}\n  performance: {show_progress: false}\n')
    code, out, err = run('index', '--images', tmp/'gallery', '--config', cfg)
    assert code == 0, err
    return tmp, ('--config', str(cfg))


@pytest.fixture
def folder(tmp_path):
    "A fresh gallery folder of four good images"
    make_sample_dataset(tmp_path/'g', n=4)
    (tmp_path/'g'/'captions.jsonl').unlink()
    return tmp_path/'g'


def index_folder(env, folder, *extra):
    tmp, cfg = env
    return run('index', '--images', folder, '--index', folder.parent/'idx', *cfg, *extra)


def skipped_lines(err):
    return [l for l in err.splitlines() if l.startswith('skipped ')]


# ------------------------------------------------------------------------- 1. images Pillow refuses or mishandles
def test_panorama_above_the_pixel_limit_is_skipped_and_named(env, folder):
    Image.new('RGB', (4000, 1000), 'green').save(folder/'pano.png')
    code, out, err = index_folder(env, folder, '--max-pixels', 1_000_000)
    assert code == 0 and 'indexed 4 images' in out and 'Traceback' not in err, err
    assert any('pano.png: 4000x1000 is 4 megapixels, above the limit of 1' in l for l in skipped_lines(err)), err


def test_big_jpeg_is_decoded_reduced_not_refused(env, folder):
    Image.new('RGB', (4000, 1000), 'green').save(folder/'pano.jpg')
    code, out, err = index_folder(env, folder, '--max-pixels', 1_000_000)
    assert code == 0 and 'indexed 5 images' in out and not skipped_lines(err), err


def test_tiny_file_declaring_huge_dimensions_is_refused_before_decoding(env, folder):
    (folder/'bomb.png').write_bytes(png_header(100_000, 100_000))
    code, out, err = index_folder(env, folder)
    assert code == 0 and 'indexed 4 images' in out, err
    assert any('bomb.png: 100000x100000 is 10,000 megapixels' in l for l in skipped_lines(err)), err


def test_empty_and_truncated_files_are_skipped_with_their_reason(env, folder):
    (folder/'empty.jpg').write_bytes(b'')
    Image.new('RGB', (64, 64), 'red').save(folder/'whole.jpg')
    (folder/'cut.jpg').write_bytes((folder/'whole.jpg').read_bytes()[:300])
    code, out, err = index_folder(env, folder)
    assert code == 0 and 'indexed 5 images' in out, err
    lines = skipped_lines(err)
    assert any('empty.jpg: file is empty' in l for l in lines) and any('cut.jpg: corrupt or truncated' in l for l in lines)


def test_query_image_bomb_is_one_line(env):
    tmp, cfg = env
    (tmp/'bomb.png').write_bytes(png_header(100_000, 100_000))
    fails(*run('search', '--image', tmp/'bomb.png', *cfg)[::2], 'bomb.png', 'above the limit')


def test_query_image_that_is_text_is_one_line(env):
    tmp, cfg = env
    (tmp/'notes.jpg').write_text('not a picture')
    fails(*run('search', '--image', tmp/'notes.jpg', *cfg)[::2], 'notes.jpg', 'not an image file')


def test_sixteen_bit_png_embeds_as_its_eight_bit_twin(env, tmp_path):
    tmp, _ = env
    rgb = np.asarray(Image.open(sorted((tmp/'gallery').glob('*.png'))[0]).convert('L'))
    Image.fromarray(rgb.astype(np.uint16) * 257).save(tmp_path/'deep.png')          # 16-bit, same picture
    Image.fromarray(rgb).save(tmp_path/'flat.png')
    bi = BiEncoder(f"local-dir:{tmp/'clip'}", show_progress=False)
    deep, flat = bi.encode_images([tmp_path/'deep.png', tmp_path/'flat.png'])
    assert float(deep @ flat) > 0.9999


# ------------------------------------------------------------------------------ 2. entries that escape the gallery
def test_symlink_out_of_the_gallery_is_skipped_before_encoding(env, folder, tmp_path):
    Image.new('RGB', (32, 32), 'blue').save(tmp_path/'secret.png')
    (folder/'leak.png').symlink_to(tmp_path/'secret.png')
    code, out, err = index_folder(env, folder)
    assert code == 0 and 'indexed 4 images' in out, err
    assert any(f"leak.png: links to {tmp_path/'secret.png'}, outside the gallery folder" in l for l in skipped_lines(err))
    assert 'leak.png' not in (folder.parent/'idx'/'gallery.jsonl').read_text()


def test_link_out_of_the_gallery_is_never_decoded(env, folder, tmp_path, monkeypatch):
    "Decided when the folder is listed: the encoder is never asked for the file behind the link"
    import hybrid_retrieval.bi_encoder as bi_encoder
    Image.new('RGB', (32, 32), 'blue').save(tmp_path/'secret.png')
    (folder/'leak.png').symlink_to(tmp_path/'secret.png')
    asked, real = [], bi_encoder.load_image
    monkeypatch.setattr(bi_encoder, 'load_image', lambda p, *a, **k: asked.append(Path(p).name) or real(p, *a, **k))
    code, out, err = index_folder(env, folder)
    assert code == 0 and len(asked) == 4 and 'leak.png' not in asked and 'secret.png' not in asked, (asked, err)


def test_dangling_symlink_is_skipped_and_named(env, folder):
    (folder/'gone.png').symlink_to(folder/'never-there.png')
    code, out, err = index_folder(env, folder)
    assert code == 0 and any('gone.png: broken symbolic link' in l for l in skipped_lines(err)), err


def test_symlink_that_stays_inside_is_an_image_like_any_other(env, folder):
    (folder/'alias.png').symlink_to(sorted(folder.glob('*.png'))[0])
    code, out, err = index_folder(env, folder)
    assert code == 0 and 'indexed 5 images' in out and not skipped_lines(err), err


def test_linked_folder_out_of_the_gallery_is_not_followed(env, folder, tmp_path):
    (tmp_path/'elsewhere').mkdir(); Image.new('RGB', (32, 32)).save(tmp_path/'elsewhere'/'x.png')
    (folder/'sub').symlink_to(tmp_path/'elsewhere', target_is_directory=True)
    code, out, err = index_folder(env, folder)
    assert code == 0 and 'indexed 4 images' in out and 'x.png' not in out, err


def test_captions_naming_a_path_outside_the_root_are_skipped(env, folder):
    (folder/'caps.csv').write_text('image,caption\n0000_red_circle.png,a red circle\n../../etc/passwd,nope\n')
    code, out, err = run('index', '--captions', folder/'caps.csv', '--index', folder.parent/'idx', *env[1])
    assert code == 0 and 'indexed 1 images' in out, err
    assert any("caps.csv:3: image path '../../etc/passwd' escapes the dataset root" in l for l in skipped_lines(err)), err


def test_captions_naming_a_link_that_leads_outside_are_skipped(env, folder, tmp_path):
    Image.new('RGB', (8, 8)).save(tmp_path/'outside.png')
    (folder/'inner.png').symlink_to(tmp_path/'outside.png')
    (folder/'caps.jsonl').write_text('{"image": "inner.png", "caption": "x"}\n{"image": "0001_red_square.png", "caption": "y"}\n')
    code, out, err = run('index', '--captions', folder/'caps.jsonl', '--index', folder.parent/'idx', *env[1])
    assert code == 0 and 'indexed 1 images' in out and any('caps.jsonl:1' in l for l in skipped_lines(err)), err


# --------------------------------------------------------------------------------- 3. text files as people save them
def test_captions_csv_with_a_byte_order_mark_is_read(env, folder):
    (folder/'caps.csv').write_bytes(b'\xef\xbb\xbfimage,caption\n0000_red_circle.png,a red circle\n0001_red_square.png,x\n')
    code, out, err = run('index', '--captions', folder/'caps.csv', '--index', folder.parent/'idx', *env[1])
    assert code == 0 and 'indexed 2 images' in out and not skipped_lines(err), err


def flickr(tmp_path, results:bytes, karpathy=None):
    "A miniature Flickr30k folder (two images) with the given results.csv bytes and Karpathy JSON"
    d = tmp_path/'flickr'; (d/'flickr30k_images').mkdir(parents=True)
    for name in ('1.jpg', '2.jpg'): Image.new('RGB', (16, 16), 'red').save(d/'flickr30k_images'/name)
    if results is not None: (d/'results.csv').write_bytes(results)
    if karpathy is not None: (d/'dataset_flickr30k.json').write_text(karpathy if isinstance(karpathy, str) else json.dumps(karpathy))
    return d


def test_kaggle_results_csv_with_a_byte_order_mark_is_read(env, tmp_path):
    d = flickr(tmp_path, b'\xef\xbb\xbfimage_name| comment_number| comment\n1.jpg| 0| a dog\n2.jpg| 0| a cat\n')
    code, out, err = run('index', '--flickr30k', d, '--index', tmp_path/'idx', *env[1])
    assert code == 0 and 'indexed 2 images' in out, err


def test_undecodable_row_of_results_csv_is_skipped_with_its_line(env, tmp_path):
    d = flickr(tmp_path, b'image_name| comment_number| comment\n1.jpg| 0| a dog\n2.jpg| 0| un caf\xe9\n')
    code, out, err = run('index', '--flickr30k', d, '--index', tmp_path/'idx', *env[1])
    assert code == 0 and 'indexed 1 images' in out, err
    assert any('results.csv:3: not UTF-8 text (byte 0xe9' in l for l in skipped_lines(err)), err


def test_undecodable_captions_csv_row_is_skipped_with_its_line(env, folder):
    (folder/'caps.csv').write_bytes(b'image,caption\n0000_red_circle.png,ok\n0001_red_square.png,caf\xe9\n')
    code, out, err = run('index', '--captions', folder/'caps.csv', '--index', folder.parent/'idx', *env[1])
    assert code == 0 and any('caps.csv:3: not UTF-8 text' in l for l in skipped_lines(err)), err


def test_undecodable_captions_jsonl_line_is_skipped_with_its_line(env, folder):
    (folder/'caps.jsonl').write_bytes(b'{"image": "0000_red_circle.png", "caption": "caf\xe9"}\n'
                                      b'{"image": "0001_red_square.png", "caption": "ok"}\n')
    code, out, err = run('index', '--captions', folder/'caps.jsonl', '--index', folder.parent/'idx', *env[1])
    assert code == 0 and 'indexed 1 images' in out and any('caps.jsonl:1: not UTF-8' in l for l in skipped_lines(err))


def test_undecodable_config_names_file_and_line(env, tmp_path):
    (tmp_path/'latin.yaml').write_bytes(b'hybrid_search:\n  stage1: {model: "caf\xe9"}\n')
    fails(*run('search', 'a dog', '--config', tmp_path/'latin.yaml')[::2], 'latin.yaml:2: not UTF-8 text')


def test_config_with_a_byte_order_mark_is_read(env, tmp_path):
    tmp, cfg = env
    (tmp_path/'bom.yaml').write_bytes(b'\xef\xbb\xbf' + Path(cfg[1]).read_bytes())
    code, out, err = run('search', 'a red circle', '--config', tmp_path/'bom.yaml')
    assert code == 0, err


def test_captions_csv_without_a_header_names_file_and_line(env, folder):
    (folder/'caps.csv').write_text('0000_red_circle.png,a red circle\n')
    fails(*run('index', '--captions', folder/'caps.csv', *env[1])[::2], 'caps.csv:1:', "must name the 'image' and 'caption'")


def test_results_csv_with_another_header_names_file_and_line(env, tmp_path):
    d = flickr(tmp_path, b'name,caption\n1.jpg,a dog\n')
    fails(*run('index', '--flickr30k', d, *env[1])[::2], 'results.csv:1:', "not Flickr30k's results.csv")


def test_karpathy_json_syntax_error_names_file_and_line(env, tmp_path):
    d = flickr(tmp_path, None, '{"images": [\n  {"filename": "1.jpg",}\n]}')
    fails(*run('index', '--flickr30k', d, *env[1])[::2], 'dataset_flickr30k.json:2: not valid JSON')


def test_yaml_syntax_error_names_file_line_and_column(env, tmp_path):
    (tmp_path/'broken.yaml').write_text('hybrid_search:\n  stage1: {k1: 10\n')
    fails(*run('search', 'x', '--config', tmp_path/'broken.yaml')[::2], 'broken.yaml:3:1: not valid YAML')


# ------------------------------------------------------------------------ 4. Karpathy-style JSON of the wrong shape
def karpathy(*records):
    good = {'filename': '1.jpg', 'split': 'test', 'sentences': [{'raw': 'a dog'}]}
    return {'images': [good, *records]}


@pytest.mark.parametrize('record, where, why', [
    ({'filename': '2.jpg', 'split': 5, 'sentences': []}, 'images[1]', "'split' of '2.jpg' must be a string such as 'test', got 5"),
    ({'filename': '2.jpg', 'split': 'test', 'sentences': None}, 'images[1]', "'sentences' of '2.jpg' must be a list, got None"),
    ({'filename': '2.jpg', 'split': 'test', 'sentences': [{'raw': 7}]}, 'images[1].sentences[0]', "'raw' must be a caption string, got 7"),
    ({'filename': '2.jpg', 'split': 'test', 'sentences': ['a cat']}, 'images[1].sentences[0]', "'raw' must be a caption string, got 'a cat'"),
    ({'split': 'test'}, 'images[1]', "'filename' must be a file name, got None"),
    ('2.jpg', 'images[1]', "expected an object, got '2.jpg'"),
    ({'filename': 7, 'split': 'test'}, 'images[1]', "'filename' must be a file name, got 7"),
])
def test_each_bad_karpathy_record_is_skipped_naming_file_position_and_field(env, tmp_path, record, where, why):
    d = flickr(tmp_path, None, karpathy(record))
    code, out, err = run('index', '--flickr30k', d, '--index', tmp_path/'idx', *env[1])
    assert code == 0 and 'Traceback' not in err, err
    assert f'skipped dataset_flickr30k.json: {where}: {why}' in err, err


def test_karpathy_file_whose_every_record_is_bad_names_the_first(env, tmp_path):
    d = flickr(tmp_path, None, {'images': [{'filename': '1.jpg', 'split': 5, 'sentences': None}]})
    code, out, err = run('index', '--flickr30k', d, *env[1])
    assert code == 1 and 'Traceback' not in err, err
    assert err.strip().splitlines()[-1] == (f"hybrid-retrieval: error: no images found in {d/'flickr30k_images'}; every "
                                            "entry was skipped, e.g. dataset_flickr30k.json: images[0]: 'split' of "
                                            "'1.jpg' must be a string such as 'test', got 5"), err


def test_karpathy_file_without_an_images_list_is_one_line(env, tmp_path):
    d = flickr(tmp_path, None, {'images': {'1.jpg': 'test'}})
    fails(*run('index', '--flickr30k', d, *env[1])[::2], 'dataset_flickr30k.json is not a Karpathy split file')


# ----------------------------------------------------------------------------------------- 5. configuration files
LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + ''.join(
    f'{b}: &{b} [*{a},*{a},*{a},*{a},*{a},*{a},*{a},*{a},*{a}]\n' for a,b in zip('abcdefgh', 'bcdefghi'))


def test_billion_laughs_is_refused_before_expansion(tmp_path):
    (tmp_path/'laughs.yaml').write_text(LAUGHS + 'hybrid_search: {stage1: {k1: *i}}\n')
    fails(*run('search', 'x', '--config', tmp_path/'laughs.yaml')[::2], 'laughs.yaml', 'expands to more than 100,000 values')


def test_preset_does_not_hide_an_invalid_value_in_the_users_file(tmp_path):
    (tmp_path/'mine.yaml').write_text('hybrid_search: {stage1: {k1: "twenty"}}\n')
    fails(*run('search', 'x', '--config', tmp_path/'mine.yaml', '--preset', 'toy')[::2],
          "mine.yaml: hybrid_search.stage1.k1 must be an integer, got 'twenty'")


def test_preset_in_the_file_does_not_hide_an_invalid_value(tmp_path):
    (tmp_path/'mine.yaml').write_text('hybrid_search: {preset: toy, fusion: {method: best}}\n')
    fails(*run('search', 'x', '--config', tmp_path/'mine.yaml')[::2], 'hybrid_search.fusion.method must be one of', "'best'")


def test_python_tags_are_refused_with_their_place(tmp_path):
    (tmp_path/'evil.yaml').write_text('hybrid_search:\n  device: !!python/object/apply:os.system ["touch pwned"]\n')
    fails(*run('search', 'x', '--config', tmp_path/'evil.yaml')[::2], 'evil.yaml:2:11: not valid YAML')
    assert not Path('pwned').exists()


def test_huge_value_is_shortened_in_the_message(tmp_path):
    (tmp_path/'long.yaml').write_text('hybrid_search: {stage1: {k1: "' + 'x' * 100_000 + '"}}\n')
    code, out, err = run('search', 'x', '--config', tmp_path/'long.yaml')
    fails(code, err, 'hybrid_search.stage1.k1 must be an integer')
    assert len(err) < 300, len(err)


def test_deeply_nested_yaml_is_one_line(tmp_path):
    (tmp_path/'deep.yaml').write_text('[' * 5000 + ']' * 5000)
    fails(*run('search', 'x', '--config', tmp_path/'deep.yaml')[::2], 'deep.yaml', 'nested too deeply')


def test_oversized_config_file_is_refused(tmp_path):
    (tmp_path/'big.yaml').write_text('# ' + 'x' * 1_100_000 + '\nhybrid_search: {}\n')
    fails(*run('search', 'x', '--config', tmp_path/'big.yaml')[::2], 'big.yaml is 1,100,0', 'at most 1,000,000')


@pytest.mark.parametrize('text, message', [
    ('- a\n- b\n', "a configuration must be a mapping with the key 'hybrid_search', got list"),
    ('hybrid_search: {performance: {threads: 0}}', 'hybrid_search.performance.threads must be a positive integer, got 0'),
    ('hybrid_search: {data: {max_pixels: -5}}', 'hybrid_search.data.max_pixels must be a positive integer, got -5'),
    ('hybrid_search: {stage2: {k2: true}}', 'hybrid_search.stage2.k2 must be an integer, got True'),
    ('hybrid_search: {fusion: {alpha: 2}}', 'hybrid_search.fusion.alpha must be between 0 and 1, got 2.0'),
    ('hybrid_search: {stage1: [1, 2]}', 'hybrid_search.stage1 must be a mapping, got list'),
    ('hybrid_search: {stage2: {cuda_graphs: off}}',   # YAML reads an unquoted off as false
     "hybrid_search.stage2.cuda_graphs must be a string, got False (YAML reads off, on, yes, no as booleans: put it in quotes)"),
    ('hybrid_search: {stage2: {cuda_graphs: fast}}',
     "hybrid_search.stage2.cuda_graphs must be one of ['eager', 'static', 'graphs', 'compile'], got 'fast'"),
])
def test_each_config_value_error_names_key_value_and_expectation(tmp_path, text, message):
    (tmp_path/'c.yaml').write_text(text)
    fails(*run('search', 'x', '--config', tmp_path/'c.yaml')[::2], 'c.yaml', message)


def damaged_copy(env, tmp_path, edit):
    "A copy of the shared index with `edit(folder)` applied; returns (folder, snapshot after the edit)"
    tmp, _ = env
    shutil.copytree(tmp/'index', tmp_path/'index')
    edit(tmp_path/'index')
    return tmp_path/'index', snapshot(tmp_path/'index')


def edit_manifest(**changes):
    def edit(folder):
        m = json.loads((folder/'manifest.json').read_text())
        (folder/'manifest.json').write_text(json.dumps(m | changes if 'ids_reversed' not in changes
                                                       else m | {'ids': m['ids'][::-1]}))
    return edit


def test_manifest_format_version_of_the_wrong_type_is_named(env, tmp_path):
    idx, before = damaged_copy(env, tmp_path, edit_manifest(format_version='x'))
    fails(*run('search', 'x', '--index', idx, *env[1])[::2], 'manifest.json: format_version must be an integer, got')
    assert snapshot(idx) == before


# ------------------------------------------------------------------------------------------- 6. index integrity
def test_reordered_ids_are_caught_by_the_checksum(env, tmp_path):
    idx, before = damaged_copy(env, tmp_path, edit_manifest(ids_reversed=True))
    fails(*run('search', 'a red circle', '--index', idx, *env[1])[::2], 'manifest.json does not match its checksum')
    assert snapshot(idx) == before


def test_changed_search_parameter_is_caught_by_the_checksum(env, tmp_path):
    idx, before = damaged_copy(env, tmp_path, edit_manifest(params={'nprobe': 1}))
    fails(*run('search', 'x', '--index', idx, *env[1])[::2], 'does not match its checksum')


def test_edited_gallery_is_caught_by_its_checksum(env, tmp_path):
    def edit(folder):
        g = folder/'gallery.jsonl'; lines = g.read_text().splitlines()
        g.write_text('\n'.join([lines[1]] + [lines[0]] + lines[2:]) + '\n')
    idx, before = damaged_copy(env, tmp_path, edit)
    fails(*run('search', 'x', '--index', idx, *env[1])[::2], 'gallery.jsonl does not match its manifest')
    assert snapshot(idx) == before


def test_truncated_faiss_file_is_caught(env, tmp_path):
    def edit(folder): f = folder/'index.faiss'; f.write_bytes(f.read_bytes()[:100])
    idx, before = damaged_copy(env, tmp_path, edit)
    fails(*run('search', 'x', '--index', idx, *env[1])[::2], 'index.faiss does not match its manifest (checksum mismatch)')


def test_manifest_that_is_not_json_names_file_and_line(env, tmp_path):
    def edit(folder): (folder/'manifest.json').write_text('{"format_version": 2,\n oops}')
    idx, _ = damaged_copy(env, tmp_path, edit)
    fails(*run('search', 'x', '--index', idx, *env[1])[::2], 'manifest.json:2: not valid JSON')


def test_manifest_count_of_the_wrong_type_is_named(env, tmp_path):
    idx, _ = damaged_copy(env, tmp_path, edit_manifest(count='12'))
    fails(*run('verify', '--index', idx, *env[1])[::2], "manifest.json: count must be an integer, got '12'")


def test_broken_gallery_file_of_a_format_1_index_names_file_and_line(env, tmp_path):
    def edit(folder):
        m = json.loads((folder/'manifest.json').read_text())
        v1 = {k: v for k,v in m.items() if k not in ('files', 'checksum')} | {'format_version': 1, 'sha256': m['files']['index.faiss']}
        (folder/'manifest.json').write_text(json.dumps(v1)); (folder/'gallery.json').write_text('{"root": ')
    idx, _ = damaged_copy(env, tmp_path, edit)
    code, out, err = run('search', 'x', '--index', idx, '--config', env[0]/'nomodels.yaml')
    assert code == 1 and 'Traceback' not in err, err
    assert err.strip().splitlines()[-1].startswith(f"hybrid-retrieval: error: {idx/'gallery.json'}:1: not valid JSON"), err


def test_deleted_image_is_dropped_and_stage_two_still_runs(env, tmp_path):
    tmp, cfg = env
    make_sample_dataset(tmp_path/'g', n=8)
    assert run('index', '--images', tmp_path/'g', '--index', tmp_path/'idx', *cfg)[0] == 0
    (tmp_path/'g'/'0000_red_circle.png').unlink()
    code, out, err = run('search', 'a red circle', '--index', tmp_path/'idx', '--k1', 8, '--k2', 8, '--format', 'json', *cfg)
    response = json.loads(out)
    assert code == 0 and not response['fallback'] and len(response['results']) == 7, err
    assert '0000_red_circle.png' not in [r['image_id'] for r in response['results']]
    assert "image '0000_red_circle.png' is gone from" in err and 'verify --prune' in err


def test_verify_reports_then_prunes_missing_images(env, tmp_path):
    tmp, cfg = env
    make_sample_dataset(tmp_path/'g', n=8)
    assert run('index', '--images', tmp_path/'g', '--index', tmp_path/'idx', *cfg)[0] == 0
    (tmp_path/'g'/'0001_red_square.png').unlink()
    before = snapshot(tmp_path/'idx')
    fails(*run('verify', '--index', tmp_path/'idx', *cfg)[::2], "1 of 8 indexed images are gone from disk (e.g. '0001_red_square.png')")
    assert snapshot(tmp_path/'idx') == before
    code, out, err = run('verify', '--prune', '--index', tmp_path/'idx', *cfg)
    assert code == 0 and "removed 1 images that are gone from disk (e.g. '0001_red_square.png'); 7 remain" in out, err
    assert run('verify', '--index', tmp_path/'idx', *cfg)[0] == 0
    assert run('index', '--images', tmp_path/'g', '--index', tmp_path/'idx', '--extend', *cfg)[0] == 0


# ----------------------------------------------------------------------------------------------------- 7. outputs
def test_output_named_like_the_table_is_refused_and_writes_nothing(env, tmp_path):
    fails(*run('eval', '--sample', tmp_path/'s', '--output', tmp_path/'rep.csv', *env[1])[::2],
          'rep.csv names the table or figure', 'rep.json')
    assert not (tmp_path/'rep.csv').exists()


def test_existing_table_beside_the_report_is_not_replaced_without_force(env, tmp_path):
    (tmp_path/'x.csv').write_text('my own spreadsheet\n')
    fails(*run('eval', '--sample', tmp_path/'s', '--output', tmp_path/'x.json', *env[1])[::2],
          f"{tmp_path/'x.csv'} exists and would be replaced: pass --force")
    assert (tmp_path/'x.csv').read_text() == 'my own spreadsheet\n' and not (tmp_path/'x.json').exists()


def test_force_replaces_the_table_and_figure(env, tmp_path):
    (tmp_path/'x.csv').write_text('old\n')
    code, out, err = run('eval', '--sample', tmp_path/'s', '--methods', 'clip', '--directions', 't2i', '--queries', 5,
                         '--output', tmp_path/'x.json', '--force', *env[1])
    assert code == 0, err
    assert (tmp_path/'x.csv').read_text().startswith('method,') and (tmp_path/'x.png').stat().st_size > 1000


@pytest.mark.parametrize('umask', [0o022, 0o027])
def test_files_and_folders_are_created_with_the_users_umask(env, tmp_path, umask):
    tmp, cfg = env
    old = os.umask(umask)
    try:
        assert run('index', '--images', tmp/'gallery', '--index', tmp_path/'idx', *cfg)[0] == 0
        assert run('search', 'a dog', '--index', tmp_path/'idx', '--output', tmp_path/'out'/'r.json', *cfg)[0] == 0
    finally: os.umask(old)
    assert (tmp_path/'idx').stat().st_mode & 0o777 == 0o777 & ~umask
    for f in ('idx/gallery.jsonl', 'idx/manifest.json', 'idx/index.faiss', 'out/r.json'):
        assert (tmp_path/f).stat().st_mode & 0o777 == 0o666 & ~umask, f


# ------------------------------------------------------------------------------------------ 8. interrupted runs
def test_leftovers_of_a_killed_index_run_are_cleaned_by_the_next(env, tmp_path):
    tmp, cfg = env
    pid = dead_pid()
    (tmp_path/f'.idx.{pid}-abcd.tmp').mkdir(); (tmp_path/f'.idx.{pid}-abcd.tmp'/'index.faiss').write_bytes(b'half')
    (tmp_path/f'.idx.{pid}.old').mkdir()
    (tmp_path/'idx').mkdir()                                     # the previous index is there: the .old is stale
    code, out, err = run('index', '--images', tmp/'gallery', '--index', tmp_path/'idx', *cfg)
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ['idx']


def test_crash_between_the_two_renames_is_recovered_by_the_next_search(env, tmp_path):
    tmp, cfg = env
    assert run('index', '--images', tmp/'gallery', '--index', tmp_path/'idx', *cfg)[0] == 0
    before = snapshot(tmp_path/'idx')
    os.replace(tmp_path/'idx', tmp_path/f'.idx.{dead_pid()}.old')   # killed after moving the old index aside
    code, out, err = run('search', 'a red circle', '--index', tmp_path/'idx', *cfg)
    assert code == 0 and 'restored' in err, err
    assert snapshot(tmp_path/'idx') == before


def test_leftover_cache_file_of_a_killed_run_is_removed(env, tmp_path):
    tmp, cfg = env
    (tmp_path/'c.yaml').write_text(Path(cfg[1]).read_text().replace(str(tmp/'emb'), str(tmp_path/'emb')))
    assert run('index', '--images', tmp/'gallery', '--index', tmp_path/'first', '--config', tmp_path/'c.yaml')[0] == 0
    model_dir = next(p for p in (tmp_path/'emb').iterdir() if p.is_dir())   # its own cache: other tests touch the shared one
    half = model_dir/f'.embeddings.npy.{dead_pid()}-zz.tmp'
    half.write_bytes(b'x' * 1000)
    code, out, err = run('index', '--images', tmp/'gallery', '--index', tmp_path/'idx', '--config', tmp_path/'c.yaml')
    assert code == 0 and '12 from cache' in out and not half.exists(), (out, err)


def test_a_running_writers_temporary_folder_is_left_alone(env, tmp_path):
    tmp, cfg = env
    mine = tmp_path/f'.idx.{os.getpid()}-live.tmp'; mine.mkdir()
    assert run('index', '--images', tmp/'gallery', '--index', tmp_path/'idx', *cfg)[0] == 0
    assert mine.is_dir()


def test_sigkill_during_index_leaves_the_previous_index_usable(env, tmp_path):
    tmp, cfg = env
    assert run('index', '--images', tmp/'gallery', '--index', tmp_path/'idx', *cfg)[0] == 0
    before = snapshot(tmp_path/'idx')
    make_sample_dataset(tmp_path/'big', n=300)
    exe = Path(sys.executable).parent/'hybrid-retrieval'
    proc = subprocess.Popen([str(exe), 'index', '--images', str(tmp_path/'big'), '--index', str(tmp_path/'idx'), *cfg],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import time; time.sleep(6); proc.kill(); proc.wait()
    assert snapshot(tmp_path/'idx') == before or json.loads((tmp_path/'idx'/'manifest.json').read_text())['count'] == 300
    assert run('search', 'a red circle', '--index', tmp_path/'idx', *cfg)[0] == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.idx.')]


# ------------------------------------------------------------------------------- 9. fail before loading models
@pytest.mark.parametrize('argv, message', [
    (('search', ''), 'query is empty'),
    (('search', ' \t '), 'query is empty'),
    (('search', 'a dog', '--filter', 'colour'), "--filter expects KEY=VALUE, got 'colour'"),
    (('search', 'a dog', '--filter', '=red'), "--filter expects KEY=VALUE, got '=red'"),
    (('search', 'a dog', '--k1', '5', '--k2', '9'), 'hybrid_search.stage2.k2 (9) must not exceed hybrid_search.stage1.k1 (5)'),
    (('search', 'a dog', '--mmr', '2'), 'hybrid_search.mmr.lambda must be between 0 and 1, got 2'),
    (('search', '--image', '/no/such.jpg'), '/no/such.jpg: file not found'),
    (('search', 'a dog', '--max-pixels', '0'), 'hybrid_search.data.max_pixels must be a positive integer, got 0'),
    (('search', 'a dog', '--threads', '0'), '--threads must be a positive integer, got 0'),
    (('eval', '--methods', 'clip,bm25'), "unknown method or direction 'bm25'"),
    (('eval', '--directions', 'i2i'), "unknown method or direction 'i2i'"),
    (('eval', '--k1', '0'), 'k1 must be a positive integer, got 0'),
    (('eval', '--k1', '10,x'), "--k1 expects comma-separated integers, got '10,x'"),
    (('eval', '--fusion', 'max'), "invalid sweep value 'max'"),
    (('eval', '--queries', '0'), '--queries must be a positive integer, got 0'),
    (('eval', '--output', 'r.png'), 'r.png names the table or figure'),
    (('index', '--images', '/no/such/folder'), 'image folder not found: /no/such/folder'),
    (('index', '--captions', '/no/such.csv'), 'captions file not found: /no/such.csv'),
])
def test_mistakes_fail_before_any_model_loads(env, argv, message):
    "The configuration names models that do not exist: an error about the model would mean one was loaded first"
    tmp, _ = env
    code, out, err = run(*argv, '--config', tmp/'nomodels.yaml')
    fails(code, err, message)
    assert 'no/such/clip' not in err and 'no/such/blip2' not in err


def test_damaged_index_is_reported_before_any_model_loads(env, tmp_path):
    tmp, _ = env
    idx, _ = damaged_copy(env, tmp_path, edit_manifest(ids_reversed=True))
    code, out, err = run('search', 'a dog', '--index', idx, '--config', tmp/'nomodels.yaml')
    fails(code, err, 'manifest.json does not match its checksum')
    code, out, err = run('index', '--images', tmp/'gallery', '--extend', '--index', idx, '--config', tmp/'nomodels.yaml')
    fails(code, err, 'manifest.json does not match its checksum')


def test_unforeseen_error_is_one_line_pointing_at_debug(env, monkeypatch):
    import hybrid_retrieval.cli as cli
    monkeypatch.setitem(cli._COMMANDS, 'verify', lambda args: (_ for _ in ()).throw(RuntimeError('boom\nsecond line')))
    fails(*run('verify', *env[1])[::2], 'unexpected RuntimeError: boom (run with --debug for the traceback)')
    with pytest.raises(RuntimeError): run('verify', '--debug', *env[1])
    with pytest.raises(RuntimeError): run('--debug', 'verify', *env[1])     # the documented place for it


# ------------------------------------------------------------------------------------------------- 10. a busy CPU
def test_threads_flag_sizes_torchs_pool(env):
    before = torch.get_num_threads()
    try:
        assert run('search', 'a red circle', '--threads', '1', *env[1])[0] == 0
        assert torch.get_num_threads() == 1
    finally: torch.set_num_threads(before)


def test_threads_config_key_sizes_torchs_pool(env, tmp_path):
    tmp, cfg = env
    (tmp_path/'c.yaml').write_text(Path(cfg[1]).read_text().replace('show_progress: false', 'show_progress: false, threads: 1'))
    before = torch.get_num_threads()
    try:
        assert run('search', 'a red circle', '--config', tmp_path/'c.yaml')[0] == 0
        assert torch.get_num_threads() == 1
    finally: torch.set_num_threads(before)


def python(code, **env):
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          env={k: v for k,v in {**os.environ, **env}.items() if v is not None})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_default_threads_follow_the_cores_this_process_may_use():
    assert python('import os; os.sched_setaffinity(0, {0}); from hybrid_retrieval.device import set_threads; '
                  'import torch; print(set_threads(), torch.get_num_threads())') == '1 1'
    assert usable_cores() == len(os.sched_getaffinity(0))


def test_waiting_threads_sleep_unless_the_user_chose_otherwise():
    assert python('import hybrid_retrieval.core, os; print(os.environ["OMP_WAIT_POLICY"])', OMP_WAIT_POLICY=None) == 'PASSIVE'
    assert python('import hybrid_retrieval.core, os; print(os.environ["OMP_WAIT_POLICY"])', OMP_WAIT_POLICY='ACTIVE') == 'ACTIVE'


def test_the_battery_is_large_enough():
    "The 91 cases before issue 28 and its 40 more (two of them, the server's, in test_server.py)"
    import inspect
    n = 0
    for name, fn in list(globals().items()):
        if not name.startswith('test_') or name == 'test_the_battery_is_large_enough': continue
        marks = [m for m in getattr(fn, 'pytestmark', []) if m.name == 'parametrize']
        n += len(marks[0].args[1]) if marks else 1
    assert n >= 91 + 40 - 2, n


# ------------------------------------------------------------- a command never replaces what is not one of its folders
@pytest.mark.parametrize('target', ['the gallery', 'a file', "another program's folder"])
def test_index_refuses_a_target_that_is_not_an_index(env, tmp_path, target):
    tmp, cfg = env
    gallery = tmp_path/'gallery'
    shutil.copytree(tmp/'gallery', gallery)
    other = tmp_path/'other'
    if target == 'a file': other.write_text('notes\n')
    elif target != 'the gallery': other.mkdir(); (other/'db.sqlite').write_bytes(b'SQLite format 3\x00')
    dest = gallery if target == 'the gallery' else other
    before, around = snapshot(tmp_path), sorted(p.name for p in tmp_path.iterdir())
    code, out, err = run('index', '--images', gallery, '--index', dest, *cfg)
    fails(code, err, dest, 'refusing to replace it')
    assert snapshot(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == around


def test_saving_an_index_over_a_folder_that_is_not_one_is_refused(env, tmp_path):
    from hybrid_retrieval.index import ImageIndex
    tmp, _ = env
    index = ImageIndex.load(tmp/'index')
    photos = tmp_path/'photos'; photos.mkdir(); (photos/'cat.png').write_bytes(b'a photo')
    with pytest.raises(FileExistsError, match='holds no index folder \\(no manifest.json\\): refusing to replace it'):
        index.save(photos)
    assert [p.name for p in photos.iterdir()] == ['cat.png'] and not list(tmp_path.glob('.photos*'))
    index.save(tmp_path/'copy'); index.save(tmp_path/'copy')   # its own folder: replaced, as before


def test_ray_indexing_refuses_a_foreign_folder_before_starting(tmp_path):
    from hybrid_retrieval.scale import index_with_ray
    photos = tmp_path/'photos'; photos.mkdir(); (photos/'cat.png').write_bytes(b'a photo')
    called = []
    with pytest.raises(FileExistsError, match='photos is not empty and holds no index folder'):
        index_with_ray(lambda **kw: called.append(kw), make_sample_dataset(tmp_path/'g', n=2), photos)
    assert not called and [p.name for p in photos.iterdir()] == ['cat.png']


# --------------------------------------------------------------------- a model is what its weights are, not where it sits
def test_an_index_opens_with_the_same_weights_from_another_folder(env, tmp_path):
    from hybrid_retrieval.index import ImageIndex, build_index, check_index_model
    from hybrid_retrieval.embeddings import EmbeddingCache
    tmp, _ = env
    moved = shutil.copytree(tmp/'clip', tmp_path/'venv2'/'clip')          # the same weights, reinstalled elsewhere
    here, there = BiEncoder(f'local-dir:{tmp/"clip"}', None), BiEncoder(f'local-dir:{moved}', None)
    assert here.model_id != there.model_id and here.model_id.split('@')[1] == there.model_id.split('@')[1]
    index = ImageIndex.load(tmp/'index', model_id=there.model_id)           # was: "rebuild the index"
    check_index_model(there, index)
    gallery = make_sample_dataset(tmp_path/'g', n=4)
    build_index(here, gallery, cache_dir=tmp_path/'emb')
    assert len(EmbeddingCache(tmp_path/'emb', there.model_id)) == 4          # its embedding cache is found too
    other = save_tiny_clip(tmp_path/'other', seed=1)                         # other weights: refused
    with pytest.raises(Exception, match='rebuild the index'): check_index_model(BiEncoder(f'local-dir:{other}', None), index)


# ----------------------------------------------------------------------------------- settings that are quietly wrong
def test_more_threads_than_the_machine_has_are_capped_not_a_crash(env):
    _, cfg = env
    code, out, err = run('search', 'a red circle', '--threads', '100000', *cfg)
    assert code == 0, err
    assert f"threads (100000) is more than this machine's {os.cpu_count()} CPUs: using {os.cpu_count()}" in err
    assert torch.get_num_threads() == os.cpu_count()


def test_a_device_that_is_not_one_is_one_line(env):
    _, cfg = env
    code, out, err = run('search', 'a red circle', '--device', 'cuda:x', *cfg)
    fails(code, err, "device must be 'cpu', 'cuda' or 'cuda:N', got 'cuda:x'")


def test_a_key_given_twice_names_both_lines(env, tmp_path):
    (tmp_path/'twice.yaml').write_text('hybrid_search:\n  stage1: {k1: 50}\n  stage2: {k2: 5}\n  stage1: {k1: 200}\n')
    code, out, err = run('search', 'a red circle', '--config', tmp_path/'twice.yaml')
    fails(code, err, 'twice.yaml:4', "key 'stage1' is given twice (first on line 2)")


def test_an_environment_variable_in_a_path_is_expanded(env, folder, tmp_path, monkeypatch):
    tmp, cfg = env
    monkeypatch.setenv('HR_SCRATCH', str(tmp_path/'scratch'))
    (tmp_path/'v.yaml').write_text((tmp/'config.yaml').read_text().replace(f'path: "{tmp/"index"}"',
                                                                             'path: "$HR_SCRATCH/idx"'))
    code, out, err = run('index', '--images', folder, '--config', tmp_path/'v.yaml')
    assert code == 0 and (tmp_path/'scratch'/'idx'/'manifest.json').is_file(), err
    assert not list(tmp_path.glob('$*')) and not list(Path.cwd().glob('$HR_SCRATCH*'))


def test_an_unset_environment_variable_in_a_path_is_named(env, tmp_path):
    (tmp_path/'v.yaml').write_text('hybrid_search:\n  index: {path: "${HR_NOT_SET_ANYWHERE}/idx"}\n')
    code, out, err = run('search', 'a red circle', '--config', tmp_path/'v.yaml')
    fails(code, err, 'hybrid_search.index.path: $HR_NOT_SET_ANYWHERE is not set in the environment')


@pytest.mark.parametrize('yaml', ['index: {path: "/tmp/LONG"}', 'preset: LONG', 'data: {source: folder, path: "/tmp/LONG"}'])
def test_a_huge_value_makes_a_short_message(env, tmp_path, yaml):
    (tmp_path/'v.yaml').write_text('hybrid_search:\n  ' + yaml.replace('LONG', 'x' * 300_000) + '\n')
    code, out, err = run('index', *(() if 'data' in yaml else ('--images', tmp_path)), '--config', tmp_path/'v.yaml')
    fails(code, err, 'x' * 50)
    assert len(err) < 400, len(err)


# ------------------------------------------------------------------- outputs through links, devices and pipes
def test_output_through_a_link_writes_its_target_and_keeps_the_link(env, tmp_path):
    _, cfg = env
    (tmp_path/'real.json').write_text('{}'); (tmp_path/'out.json').symlink_to(tmp_path/'real.json')
    code, out, err = run('search', 'a red circle', *cfg, '--output', tmp_path/'out.json')
    assert code == 0, err
    assert (tmp_path/'out.json').is_symlink() and json.loads((tmp_path/'real.json').read_text())['results']
    assert sorted(p.name for p in tmp_path.iterdir()) == ['out.json', 'real.json']


def test_output_to_a_named_pipe_is_written_into_the_pipe(env, tmp_path):
    import threading
    _, cfg = env
    os.mkfifo(tmp_path/'pipe')
    got = []
    reader = threading.Thread(target=lambda: got.append((tmp_path/'pipe').read_bytes()), daemon=True); reader.start()
    code, out, err = run('search', 'a red circle', *cfg, '--output', tmp_path/'pipe')
    reader.join(30)
    assert code == 0, err
    assert json.loads(got[0])['results'] and (tmp_path/'pipe').is_fifo()


def test_output_to_a_full_device_is_one_line(env):
    _, cfg = env
    code, out, err = run('search', 'a red circle', *cfg, '--output', '/dev/full')
    fails(code, err, 'cannot write /dev/full: No space left on device')
    assert Path('/dev/full').is_char_device()


def test_an_eval_report_to_a_device_is_the_json_alone(tmp_path):
    from hybrid_retrieval.evaluation import report_files
    assert report_files('/dev/null') == [Path('/dev/null')]
    assert report_files(tmp_path/'r.json') == [tmp_path/'r.json', tmp_path/'r.csv', tmp_path/'r.png']

def test_skipped_entries_go_to_a_file_through_a_link(env, folder, tmp_path):
    for n in range(15): (folder/f'empty{n:02d}.png').write_bytes(b'')
    (tmp_path/'all.tsv').write_text(''); (tmp_path/'skipped.tsv').symlink_to(tmp_path/'all.tsv')
    code, out, err = index_folder(env, folder, '--skipped-to', tmp_path/'skipped.tsv')
    assert code == 0, err
    assert len(skipped_lines(err)) == 10 and f"... and 5 more skipped (all 15 in {tmp_path/'skipped.tsv'})" in err
    assert (tmp_path/'all.tsv').read_text().count('file is empty') == 15 and (tmp_path/'skipped.tsv').is_symlink()


# ------------------------------------------------------------------ one odd record never sinks a whole load
@pytest.mark.parametrize('record,why', [('{"image": 123, "caption": "c"}', "'image' must be a string, got 123"),
                                        ('{"image": "a.png", "caption": 5}', "'caption' must be a string, got 5"),
                                        ('{"image": "a.png", "caption": ["x"]}', "'caption' must be a string, got ['x']"),
                                        ('{"image": ["a.png"], "caption": "c"}', "'image' must be a string, got ['a.png']"),
                                        ('{"image": "a.png", "caption": "c", "split": {}}', "'split' must be a string")])
def test_a_jsonl_field_of_the_wrong_type_is_skipped_with_its_line(env, folder, record, why):
    first = sorted(p.name for p in folder.iterdir())[0]
    (folder/'c.jsonl').write_text(f'{{"image": "{first}", "caption": "fine"}}\n{record}\n')
    code, out, err = run('index', '--captions', folder/'c.jsonl', '--index', folder.parent/'idx', *env[1])
    assert code == 0 and 'Traceback' not in err, err
    lines = skipped_lines(err)
    assert len(lines) == 1 and lines[0].startswith(f'skipped c.jsonl:2: {why}'), err


def test_a_ten_megabyte_csv_field_is_skipped_with_its_own_line_number(env, folder):
    first = sorted(p.name for p in folder.iterdir())[0]
    (folder/'c.csv').write_text(f'image,caption\n{first},fine\n{first},"{"x" * 10_000_000}"\n{first},also fine\n')
    code, out, err = run('index', '--captions', folder/'c.csv', '--index', folder.parent/'idx', *env[1])
    assert code == 0, err
    assert skipped_lines(err) == ['skipped c.csv:3: not a CSV row (field larger than field limit (131072))']


def test_an_image_named_twice_in_a_karpathy_file_keeps_both_records_captions(tmp_path):
    from hybrid_retrieval.data import load_flickr30k
    (tmp_path/'flickr30k_images').mkdir()
    Image.new('RGB', (8, 8)).save(tmp_path/'flickr30k_images'/'1.jpg')
    (tmp_path/'dataset_flickr30k.json').write_text(json.dumps({'images': [
        {'filename': '1.jpg', 'split': 'test', 'sentences': [{'raw': 'A dog .'}]},
        {'filename': '1.jpg', 'split': 'test', 'sentences': [{'raw': 'A dog runs .'}]}]}))
    d = load_flickr30k(tmp_path)
    assert d.captions == {'1.jpg': ['A dog .', 'A dog runs .']} and d.splits == {'1.jpg': 'test'} and not d.skipped


def test_an_image_named_twice_with_two_splits_keeps_the_first_and_says_so(tmp_path):
    from hybrid_retrieval.data import read_karpathy_split
    (tmp_path/'k.json').write_text(json.dumps({'images': [
        {'filename': '1.jpg', 'split': 'test', 'sentences': [{'raw': 'A dog .'}]},
        {'filename': '1.jpg', 'split': 'train', 'sentences': [{'raw': 'A cat .'}]}]}))
    images, skipped = read_karpathy_split(tmp_path/'k.json')
    assert images == {'1.jpg': ('test', ['A dog .', 'A cat .'])}
    assert skipped == [('k.json: images[1]', "'1.jpg' is also images[0]: captions merged, split 'train' ignored for 'test'")]


def test_a_ten_megabyte_jsonl_line_does_not_shift_the_line_numbers_after_it(env, folder):
    first = sorted(p.name for p in folder.iterdir())[0]
    (folder/'c.jsonl').write_text(f'{{"image": "{first}", "caption": "{"x" * 10_000_000}"}}\n{{"image": 7}}\n')
    code, out, err = run('index', '--captions', folder/'c.jsonl', '--index', folder.parent/'idx', *env[1])
    assert code == 0 and skipped_lines(err) == ["skipped c.jsonl:2: 'image' must be a string, got 7"], err

def test_a_split_file_of_mostly_missing_images_is_summarised_and_indexed_by_what_loaded(env, folder, tmp_path):
    names = sorted(p.name for p in folder.iterdir())
    rows = [f'{n},a picture' for n in names] + [f'gone{n:05d}.jpg,lost' for n in range(10_000)]
    (folder/'list.csv').write_text('image,caption\n' + '\n'.join(rows) + '\n')
    code, out, err = run('index', '--captions', folder/'list.csv', '--index', tmp_path/'idx', '--memory-budget-mb', '1',
                         '--skipped-to', tmp_path/'skipped.tsv', *env[1])
    assert code == 0, err
    assert len(err.splitlines()) < 25, len(err.splitlines())
    assert 'index type: flat' in out and 'indexed 4 images' in out, out
    assert len((tmp_path/'skipped.tsv').read_text().splitlines()) == 10_000


# --------------------------------------------------------------- names and formats that photo libraries hold
def test_avif_photos_are_indexed_and_heic_is_reported(env, folder):
    from hybrid_retrieval.images import undecodable
    Image.new('RGB', (40, 30), 'red').save(folder/'phone.avif')
    (folder/'iphone.heic').write_bytes(b'\x00\x00\x00\x18ftypheic')
    code, out, err = index_folder(env, folder)
    assert code == 0, err
    from hybrid_retrieval.index import ImageIndex
    ids = ImageIndex.load(folder.parent/'idx').ids
    assert 'phone.avif' in ids
    heic = undecodable('.heic')
    assert ('iphone.heic' in ids) if heic is None else (f"skipped {folder/'iphone.heic'}: {heic}" in err)


def test_an_avif_query_image_is_searched(env, tmp_path):
    tmp, cfg = env
    Image.open(sorted((tmp/'gallery').glob('*.png'))[0]).save(tmp_path/'query.avif')
    code, out, err = run('search', '--image', tmp_path/'query.avif', *cfg, '--format', 'json')
    assert code == 0 and json.loads(out)['results'], err


def test_a_caption_file_naming_a_file_with_a_newline_gets_a_printable_id(env, folder):
    first = sorted(folder.iterdir())[0]
    first.rename(folder/'two\nlines.png')
    (folder/'c.jsonl').write_text(json.dumps({'image': 'two\nlines.png', 'caption': 'a picture'}) + '\n')
    code, out, err = run('index', '--captions', folder/'c.jsonl', '--index', folder.parent/'idx', *env[1])
    from hybrid_retrieval.index import ImageIndex
    assert code == 0 and ImageIndex.load(folder.parent/'idx').ids == ['two\\nlines.png'], err

def test_an_unreadable_sub_folder_is_skipped_and_named(env, folder, monkeypatch):
    (folder/'private').mkdir(); shutil.copy(next(folder.glob('*.png')), folder/'private'/'x.png')
    real = os.scandir
    def scandir(path='.'):
        if str(path).endswith('private'): raise PermissionError(13, 'Permission denied', str(path))
        return real(path)
    monkeypatch.setattr(os, 'scandir', scandir)
    code, out, err = index_folder(env, folder)
    assert code == 0, err
    assert f"skipped {folder/'private'}: folder cannot be read (Permission denied)" in err and 'indexed 4 images' in out


def test_a_path_longer_than_the_system_allows_is_skipped_in_one_short_line(env, folder):
    fd = os.open(folder, os.O_RDONLY)
    for _ in range(20):                       # 20 x 250 characters: past PATH_MAX (4,096)
        os.mkdir('d' * 250, dir_fd=fd); nxt = os.open('d' * 250, os.O_RDONLY, dir_fd=fd); os.close(fd); fd = nxt
    os.close(fd)
    code, out, err = index_folder(env, folder)
    assert code == 0 and 'indexed 4 images' in out, err
    assert any('File name too long' in l for l in skipped_lines(err)) and max(map(len, err.splitlines())) < 400, err


@pytest.mark.parametrize('name,shown', [(b'latin\xe9.png', 'latin\\xe9.png'), (b'two\nlines.png', 'two\\nlines.png')])
def test_every_indexed_name_is_searchable_and_fetchable(env, folder, name, shown):
    from fastapi.testclient import TestClient
    from hybrid_retrieval.config import load_config
    from hybrid_retrieval.build import build_engine
    from hybrid_retrieval.server import create_app
    first = sorted(folder.iterdir())[0]
    os.rename(first, os.path.join(os.fsencode(folder), name))
    code, out, err = index_folder(env, folder)
    assert code == 0, err
    config = load_config(env[1][1]); config.index_path = str(folder.parent/'idx')
    with TestClient(create_app(build_engine(config))) as c:
        reply = c.get('/api/search', params={'q': 'a red circle', 'k1': 4, 'k2': 4})
        assert reply.status_code == 200, reply.text
        hit = next(r for r in reply.json()['results'] if r['image_id'] == shown)
        image = c.get(hit['image_url'])
    assert image.status_code == 200 and image.content == Path(os.fsdecode(os.path.join(os.fsencode(folder), name))).read_bytes()


# -------------------------------------------------------------------------------------- bounded memory for odd shapes
def test_a_one_pixel_strip_is_skipped_before_it_is_resized(env, folder):
    Image.new('RGB', (1, 100_000), 'white').save(folder/'strip.png')
    code, out, err = index_folder(env, folder)
    assert code == 0 and 'indexed 4 images' in out, err
    assert f"skipped {folder/'strip.png'}: 1x100000 is over 50 times longer than wide" in err


def test_a_strip_as_the_query_image_is_one_line(env, tmp_path):
    Image.new('RGB', (100_000, 1), 'white').save(tmp_path/'strip.png')
    code, out, err = run('search', '--image', tmp_path/'strip.png', *env[1])
    fails(code, err, '100000x1 is over 50 times longer than wide')


# ------------------------------------------------------------- readers during a rebuild, faults in one candidate
def test_a_reader_never_sees_an_index_half_replaced(env, tmp_path):
    from hybrid_retrieval.index import ImageIndex
    tmp, _ = env
    shutil.copytree(tmp/'index', tmp_path/'index')
    writer = subprocess.Popen([sys.executable, '-c', f"""
from hybrid_retrieval.index import ImageIndex
from hybrid_retrieval.index_files import load_gallery
index, gallery = ImageIndex.load({str(tmp_path/'index')!r}), load_gallery({str(tmp_path/'index')!r})
for _ in range(150): index.save({str(tmp_path/'index')!r}, gallery)"""])
    loads = 0
    while writer.poll() is None:
        assert len(ImageIndex.load(tmp_path/'index')) == 12; loads += 1
    assert writer.returncode == 0 and loads > 5


def test_an_image_broken_after_indexing_drops_that_candidate_not_stage_two(env, tmp_path):
    tmp, cfg = env
    shutil.copytree(tmp/'gallery', tmp_path/'gallery')
    (tmp_path/'v.yaml').write_text((tmp/'config.yaml').read_text().replace(str(tmp/'index'), str(tmp_path/'index')))
    assert run('index', '--images', tmp_path/'gallery', '--config', tmp_path/'v.yaml')[0] == 0
    victim = sorted((tmp_path/'gallery').glob('*.png'))[0]
    victim.write_bytes(b'not a picture any more')
    code, out, err = run('search', 'a red circle', '--config', tmp_path/'v.yaml', '--format', 'json')
    assert code == 0, err
    got = json.loads(out)
    assert not got['fallback'] and victim.name not in {c['image_id'] for c in got['candidates']}
    assert f"image '{victim.name}' cannot be loaded any more (not an image file): left out of the results" in err
