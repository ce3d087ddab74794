"Stage 1 end to end against the installed package: sample gallery -> tiny CLIP -> FAISS index -> search -> save / load."
import os, subprocess, sys
from pathlib import Path
import numpy as np, pytest
from hybrid_retrieval.bi_encoder import BiEncoder
from hybrid_retrieval.data import make_sample_dataset
from hybrid_retrieval.index import ImageIndex, IndexLoadError, build_index, search_images, search_text
from hybrid_retrieval.tiny import save_tiny_clip


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('stage1')
    dataset = make_sample_dataset(tmp/'sample', n=30)
    bi = BiEncoder(save_tiny_clip(tmp/'tiny_clip'), show_progress=False)
    index, report = build_index(bi, dataset, cache_dir=tmp/'cache')
    return tmp, dataset, bi, index, report


def test_every_image_is_indexed(world):
    _, dataset, _, index, report = world
    assert (report.added, report.skipped, len(index)) == (len(dataset), [], len(dataset))


def test_text_query_ranks_by_cosine(world):
    _, dataset, bi, index, _ = world
    hits = search_text(bi, index, 'a yellow triangle', k=7, dataset=dataset)[0]
    gallery = bi.encode_gallery(dataset)
    cos = (bi.encode_text('a yellow triangle') @ gallery.embeddings.T)[0]
    assert [h.image_id for h in hits] == [gallery.image_ids[j] for j in np.argsort(-cos)[:7]]
    assert [h.rank for h in hits] == list(range(1, 8))
    assert all(Path(h.path).is_file() for h in hits)


def test_image_query_finds_itself(world):
    _, dataset, bi, index, _ = world
    ids = dataset.image_ids[10:13]
    results = search_images(bi, index, [dataset.path(i) for i in ids], k=3, dataset=dataset)
    assert [r[0].image_id for r in results] == ids
    assert all(abs(r[0].score - 1) < 1e-4 for r in results)


def test_save_load_gives_identical_results(world):
    tmp, dataset, bi, index, _ = world
    queries = ['a red circle', 'a green square on a grey background']
    loaded = ImageIndex.load(index.save(tmp/'index'), model_id=bi.model_id, dim=bi.dim)
    assert search_text(bi, loaded, queries, k=10, dataset=dataset) == search_text(bi, index, queries, k=10, dataset=dataset)


def test_reloaded_model_gives_identical_embeddings(world):
    tmp, dataset, bi, _, _ = world
    again = BiEncoder(f'local-dir:{tmp/"tiny_clip"}', show_progress=False)
    assert again.model_id == bi.model_id
    np.testing.assert_array_equal(again.encode_text(['a blue circle']), bi.encode_text(['a blue circle']))


def test_index_of_another_model_is_refused(world):
    tmp, _, bi, index, _ = world
    saved = index.save(tmp/'index_for_other')
    other = BiEncoder(save_tiny_clip(tmp/'other_clip', seed=3), show_progress=False)
    with pytest.raises(IndexLoadError, match='rebuild the index with this model'):
        ImageIndex.load(saved, model_id=other.model_id)


def test_readme_command_runs(tmp_path):
    out = subprocess.run([sys.executable, '-c', 'from hybrid_retrieval.index import stage1_demo; stage1_demo()'],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path, env={**os.environ, 'HF_HUB_OFFLINE': '1'})
    assert out.returncode == 0, out.stderr
    assert "36 images indexed" in out.stdout and "top 5 for 'a red circle'" in out.stdout
    assert list(tmp_path.iterdir()) == []
