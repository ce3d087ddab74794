"""`hybrid-retrieval index --engine ray` as a user runs it: the sample gallery and the toy world on a local Ray, a run
killed and started again, and the on-disk index against flat on the toy world."""
import os, signal, subprocess, time
from pathlib import Path
import numpy as np
import pytest
from hybrid_retrieval.config import load_config
from hybrid_retrieval.build import build_engine
from hybrid_retrieval.index import ImageIndex
from hybrid_retrieval.toy import toy_dataset
from test_cli import script

pytest.importorskip('ray', reason="the 'scale' extra is not installed")


@pytest.fixture(scope='module')
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('scale')
    environ = {**os.environ, 'XDG_CACHE_HOME': str(tmp/'cache'), 'HF_HUB_OFFLINE': '1', 'OMP_NUM_THREADS': '1'}
    return tmp, environ


def cli(environ, *args):
    return subprocess.run([script(), *args], capture_output=True, text=True, env=environ, timeout=600)


def vectors(path):
    index = ImageIndex.load(path)
    return index.ids, index.vectors(index.ids)


def test_sample_gallery_on_ray_equals_in_process(env):
    tmp, environ = env
    common = ('--preset', 'toy', '--sample', str(tmp/'sample'))   # the toy world's CLIP, the generated sample gallery
    local = cli(environ, 'index', *common, '--index', str(tmp/'local'))
    on_ray = cli(environ, 'index', *common, '--index', str(tmp/'ray'), '--engine', 'ray', '--shard-size', '8')
    assert local.returncode == 0, local.stderr
    assert on_ray.returncode == 0, on_ray.stderr
    assert '36 embedded on Ray in 5 of 5 shards' in on_ray.stdout and '0 B spilled' in on_ray.stdout, on_ray.stdout
    assert 'index type: flat (exact)' in on_ray.stdout
    (local_ids, local_vecs), (ray_ids, ray_vecs) = vectors(tmp/'local'), vectors(tmp/'ray')
    assert ray_ids == local_ids
    np.testing.assert_allclose(ray_vecs, local_vecs, atol=1e-5)
    # --sample writes the gallery afresh (new files: every shard would be stale); --images takes it as it is
    again = cli(environ, 'index', '--preset', 'toy', '--images', str(tmp/'sample'), '--index', str(tmp/'ray'),
                '--engine', 'ray', '--shard-size', '8')
    assert '0 embedded on Ray in 0 of 5 shards, 36 from finished shards' in again.stdout, again.stdout


def first_shard_then_kill(environ, args, shards:Path, timeout=300):
    "Start the command, SIGKILL it (and the local Ray it started) once its first shard is written"
    proc = subprocess.Popen([script(), *args], env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while not list(shards.glob('*/manifest.json')):
            assert proc.poll() is None, 'the run ended before writing a shard'
            assert time.monotonic() < deadline, 'no shard was written'
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_toy_world_killed_then_resumed(env):
    tmp, environ = env
    ray_index = tmp/'toy_ray'
    args = ('index', '--preset', 'toy', '--index', str(ray_index), '--engine', 'ray', '--shard-size', '100')
    first_shard_then_kill(environ, args, ray_index/'shards')
    finished = len(list((ray_index/'shards').glob('*/manifest.json')))
    assert 1 <= finished < 10 and not (ray_index/'manifest.json').exists()
    resumed = cli(environ, *args)
    assert resumed.returncode == 0, resumed.stderr
    assert f'in {10 - finished} of 10 shards, {100 * finished} from finished shards' in resumed.stdout, resumed.stdout
    local = cli(environ, 'index', '--preset', 'toy', '--index', str(tmp/'toy_local'))
    assert local.returncode == 0, local.stderr
    (local_ids, local_vecs), (ray_ids, ray_vecs) = vectors(tmp/'toy_local'), vectors(ray_index)
    assert ray_ids == local_ids and len(ray_ids) == 1000
    np.testing.assert_allclose(ray_vecs, local_vecs, atol=1e-5)


def recall_at_10(index_path, flat_path, queries):
    "Recall@10 of the engine's CLIP stage on `index_path` against the flat index at `flat_path`"
    found, truth = [build_engine(load_config(preset='toy'), p, with_stage2=False) for p in (index_path, flat_path)]
    got = [[r.image_id for r in found.text_to_image_hybrid_search(q, k1=10, k2=10).results] for q in queries]
    want = [[r.image_id for r in truth.text_to_image_hybrid_search(q, k1=10, k2=10).results] for q in queries]
    return np.mean([len(set(g) & set(w)) / 10 for g,w in zip(got, want)]), got, want


@pytest.mark.parametrize('kind', ['ivfflat', 'ivfpq'])
def test_toy_world_on_disk_against_flat(env, kind):
    tmp, environ = env
    if not (tmp/'toy_ray'/'manifest.json').exists(): test_toy_world_killed_then_resumed(env)
    disk = cli(environ, 'index', '--preset', 'toy', '--index', str(tmp/'toy_ray'), '--engine', 'ray',
               '--shard-size', '100', '--type', kind, '--on-disk')
    assert disk.returncode == 0, disk.stderr
    assert '0 embedded on Ray in 0 of 10 shards' in disk.stdout, disk.stdout   # built from the shards alone
    assert ImageIndex.load(tmp/'toy_ray').on_disk
    queries = sorted({c for cs in toy_dataset(tmp/'cache'/'hybrid_retrieval'/'toy'/'heldout').captions.values()
                      for c in cs})[:60]
    recall, got, want = recall_at_10(tmp/'toy_ray', tmp/'toy_local', queries)
    print(f'{kind} on disk: recall@10 against flat on the toy world, {len(queries)} queries: {recall:.3f}')
    if kind == 'ivfflat': assert got == want                  # every list holding a true neighbour was scanned
    else: assert recall >= 0.95, recall        # codes find 100 candidates, their exact vectors (the shards) order them
