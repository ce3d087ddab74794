"Stage 1 end to end against the installed package: sample gallery -> tiny CLIP -> FAISS index -> CLIP-only engine -> save / load."
from pathlib import Path
import numpy as np, pytest
from hybrid_retrieval.bi_encoder import BiEncoder
from hybrid_retrieval.data import make_sample_dataset
from hybrid_retrieval.index import ImageIndex, build_index
from hybrid_retrieval.index_files import IndexLoadError
from hybrid_retrieval.hybrid_search import HybridSearchEngine, SearchConfig
from hybrid_retrieval.tiny import save_tiny_clip


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('stage1')
    dataset = make_sample_dataset(tmp/'sample', n=30)
    bi = BiEncoder(save_tiny_clip(tmp/'tiny_clip'), show_progress=False)
    index, report = build_index(bi, dataset, cache_dir=tmp/'cache')
    return tmp, dataset, bi, index, report


def clip_only(bi, index, dataset, k=10):
    "The engine without a cross-encoder: stage 1 as users get it"
    return HybridSearchEngine(bi, None, index, dataset, SearchConfig(k1=k, k2=k, show_progress=False))


def test_every_image_is_indexed(world):
    _, dataset, _, index, report = world
    assert (report.added, report.skipped, len(index)) == (len(dataset), [], len(dataset))


def test_text_query_ranks_by_cosine(world):
    _, dataset, bi, index, _ = world
    response = clip_only(bi, index, dataset, 7).text_to_image_hybrid_search('a yellow triangle')
    gallery = bi.encode_gallery(dataset)
    cos = (bi.encode_text('a yellow triangle') @ gallery.embeddings.T)[0]
    assert [r.image_id for r in response.results] == [gallery.image_ids[j] for j in np.argsort(-cos)[:7]]
    assert [r.rank for r in response.results] == list(range(1, 8))
    assert all(Path(r.path).is_file() for r in response.results)
    assert response.fallback and response.fallback_reason == 'no cross-encoder configured'


def test_image_query_finds_itself(world):
    _, dataset, bi, index, _ = world
    engine = clip_only(bi, index, dataset, 3)
    for image_id in dataset.image_ids[10:13]:
        top = engine.image_to_image_hybrid_search(dataset.path(image_id)).results[0]
        assert top.image_id == image_id and abs(top.score - 1) < 1e-4


def test_save_load_gives_identical_results(world):
    tmp, dataset, bi, index, _ = world
    queries = ['a red circle', 'a green square on a grey background']
    loaded = ImageIndex.load(index.save(tmp/'index'), model_id=bi.model_id, dim=bi.dim)
    before = [r.pairs() for r in clip_only(bi, index, dataset).batch_text_to_image_search(queries)]
    after = [r.pairs() for r in clip_only(bi, loaded, dataset).batch_text_to_image_search(queries)]
    assert after == before


def test_reloaded_model_gives_identical_embeddings(world):
    tmp, dataset, bi, _, _ = world
    again = BiEncoder(f'local-dir:{tmp/"tiny_clip"}', show_progress=False)
    assert again.model_id == bi.model_id
    np.testing.assert_array_equal(again.encode_text(['a blue circle']), bi.encode_text(['a blue circle']))


def test_index_of_another_model_is_refused(world):
    tmp, dataset, bi, index, _ = world
    saved = index.save(tmp/'index_for_other')
    other = BiEncoder(save_tiny_clip(tmp/'other_clip', seed=3), show_progress=False)
    with pytest.raises(IndexLoadError, match='rebuild the index with this model'):
        ImageIndex.load(saved, model_id=other.model_id)
    with pytest.raises(IndexLoadError, match='rebuild the index'):
        clip_only(other, index, dataset)
