"""The `lavis` evaluation method against an independent transcription of LAVIS's `compute_sim_matrix`.

The transcription follows `lavis/models/blip_models/blip_retrieval.py` (BLIP) and `lavis/models/blip2_models/blip2.py`
(BLIP-2) step by step, over transformers' own retrieval models and their forward passes on pixels: the whole ITC
matrix first, then per image (i2t) and per caption (t2i) `torch.topk(k_test)` of its row, ITM logit + ITC there and
-100 everywhere else; BLIP's ITM captions start with [ENC] as LAVIS's do. Nothing of `hybrid_retrieval` is used but
the data and model loading, so a slip in `lavis_scores` (or in the stored ITC embeddings under it) shows here."""
import numpy as np, torch
import pytest
from transformers import BlipForImageTextRetrieval
from hybrid_retrieval.cross_encoder import CrossEncoder
from hybrid_retrieval.evaluation import lavis_scores
from hybrid_retrieval.data import make_sample_dataset
from hybrid_retrieval.images import load_image
from hybrid_retrieval.tiny import save_tiny_blip2_itm
from hybrid_retrieval.toy import TOY_MODELS, toy_dataset

K_TEST = 4


@torch.inference_mode()
def compute_sim_matrix(model, processor, captions, images, k_test):
    "LAVIS's compute_sim_matrix over a transformers retrieval model: (score_i2t, score_t2i)"
    blip = isinstance(model, BlipForImageTextRetrieval)
    flag = 'use_itm_head' if blip else 'use_image_text_matching_head'
    pixels = processor.image_processor(images=images, return_tensors='pt')['pixel_values']
    tok = processor.tokenizer(captions, padding=True, truncation=True, max_length=64, return_tensors='pt')
    text_ids, text_atts = tok['input_ids'], tok['attention_mask']
    itm_ids = text_ids.clone()
    enc = processor.tokenizer.convert_tokens_to_ids('[ENC]')
    if blip and enc is not None and enc != processor.tokenizer.unk_token_id:
        itm_ids[:, 0] = enc                                                           # text_ids[:, 0] = enc_token_id

    out = model(pixel_values=pixels, input_ids=text_ids, attention_mask=text_atts, **{flag: False})
    sims_matrix = (out.itm_score if blip else out.logits_per_image).float()          # (images, texts)

    def compute_itm(image_idx, text_idx):
        o = model(pixel_values=pixels[image_idx], input_ids=itm_ids[text_idx], attention_mask=text_atts[text_idx],
                  **{flag: True})
        return (o.itm_score if blip else o.logits_per_image)[:, 1].float()

    score_matrix_i2t = torch.full((len(images), len(captions)), -100.0)
    for i, sims in enumerate(sims_matrix):
        topk_sim, topk_idx = sims.topk(k=k_test, dim=0)
        score_matrix_i2t[i, topk_idx] = compute_itm(torch.full((k_test,), i), topk_idx) + topk_sim
    sims_matrix = sims_matrix.t()
    score_matrix_t2i = torch.full((len(captions), len(images)), -100.0)
    for i, sims in enumerate(sims_matrix):
        topk_sim, topk_idx = sims.topk(k=k_test, dim=0)
        score_matrix_t2i[i, topk_idx] = compute_itm(topk_idx, torch.full((k_test,), i)) + topk_sim
    return score_matrix_i2t.numpy(), score_matrix_t2i.numpy()


def gallery(ds, n_images):
    ids = ds.image_ids[:n_images]
    return [c for i in ids for c in ds.captions[i]][:12], [ds.path(i) for i in ids]


@pytest.mark.parametrize('which', ['toy BLIP', 'tiny BLIP-2'])
def test_lavis_scores_equal_the_transcription(which, tmp_path):
    if which == 'toy BLIP':
        ds, ce = toy_dataset(tmp_path/'toy', n=8), CrossEncoder(str(TOY_MODELS/'cross_encoder'), backend='blip-itm')
    else:
        ds, ce = make_sample_dataset(tmp_path/'sample', n=8), CrossEncoder(save_tiny_blip2_itm(tmp_path/'blip2'))
    captions, paths = gallery(ds, 8)
    i2t, t2i = compute_sim_matrix(ce.model, ce.processor, captions, [load_image(p) for p in paths], K_TEST)
    ours_t2i, _, _ = lavis_scores(ce, captions, paths, 't2i', k_test=K_TEST)
    ours_i2t, _, _ = lavis_scores(ce, captions, paths, 'i2t', k_test=K_TEST)
    assert ((t2i == -100).sum(1) == len(paths) - K_TEST).all()
    assert ((i2t == -100).sum(1) == len(captions) - K_TEST).all()
    np.testing.assert_allclose(ours_t2i, t2i, atol=1e-4)
    np.testing.assert_allclose(ours_i2t, i2t, atol=1e-4)
    assert np.unique(t2i.argmax(1)).size > 1   # the rows differ: the models are not constant
