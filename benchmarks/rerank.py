"""Re-ranking cost: the first version's per-pair design vs the feature store, full-size BLIP / BLIP-2 architectures, random weights.

    python benchmarks/rerank.py --arch blip2|blip --candidates N [--device cpu|cuda] [--batch-size 4] [--output FILE]

Builds the real architecture (BLIP-2: ViT-g + Q-Former, as in Salesforce/blip2-itm-vit-g; BLIP: ViT-B/16 at 384 px + BERT,
as in Salesforce/blip-itm-base-coco) with random weights -- timing does not depend on them -- and re-ranks N generated
candidate images for one query three ways, in one run:
  uncached    the first version's design: the transformers class's forward on (pixels, text) per batch of pairs, vision encoder every time
  cached_cold CrossEncoder.score with an empty feature store: each image's features computed once, in batches
  cached_warm the same call again: features already stored, only the cross part runs
Prints one JSON object.
"""
import argparse, json, os, platform, sys, tempfile, time
import numpy as np, torch, transformers
from transformers import (BertTokenizer, BlipConfig, BlipForImageTextRetrieval, BlipImageProcessor, BlipProcessor, Blip2Config,
                          Blip2ForImageTextRetrieval, Blip2Processor)
from hybrid_retrieval.device import Timer, default_device, autocast_dtype
from hybrid_retrieval.cross_encoder import CrossEncoder
from hybrid_retrieval.feature_store import FeatureStore
from hybrid_retrieval.data import make_sample_dataset

QUERY = 'a dog playing with a red ball on the beach at sunset'

def bert_tokenizer(vocab_size):
    "A BERT WordPiece tokenizer with BLIP's vocabulary size (no download): real special tokens, the query's words, fillers"
    words = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'] + sorted(set(QUERY.split()))
    words += [f'[unused{i}]' for i in range(vocab_size - len(words) - 2)] + ['[DEC]', '[ENC]']
    return BertTokenizer(vocab={w: i for i, w in enumerate(words)})

def build(arch, dtype):
    torch.manual_seed(0)
    if arch == 'blip2':
        config = Blip2Config(qformer_config=dict(use_qformer_text_input=True))
        model = Blip2ForImageTextRetrieval(config)
        processor = Blip2Processor(BlipImageProcessor(size={'height': 224, 'width': 224}),
                                   bert_tokenizer(config.qformer_config.vocab_size))   # as the hub's ITM processor: no image tokens
    else:
        config = BlipConfig()
        model = BlipForImageTextRetrieval(config)
        processor = BlipProcessor(BlipImageProcessor(size={'height': 384, 'width': 384}), bert_tokenizer(config.text_config.vocab_size))
    return model.to(dtype).eval(), processor

@torch.inference_mode()
def per_pair(ce, arch, images, batch_size):
    "The first version's design: the transformers forward on pixels + text for each batch of pairs"
    scores = []
    for s in range(0, len(images), batch_size):
        batch = [im for im in images[s:s + batch_size]]
        pix = ce.processor.image_processor(images=batch, return_tensors='pt')['pixel_values'].to(ce.device, ce.dtype)
        ids, mask = ce.tokenize([QUERY] * len(batch))
        if arch == 'blip2': logits = ce.model(pixel_values=pix, input_ids=ids, attention_mask=mask, use_image_text_matching_head=True).logits_per_image
        else: logits = ce.model(input_ids=ids, pixel_values=pix, attention_mask=mask).itm_score
        scores.append(logits.float().softmax(-1)[:, 1].cpu())
    return torch.cat(scores).numpy()

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--arch', choices=['blip2', 'blip'], required=True)
    ap.add_argument('--candidates', type=int, default=100)
    ap.add_argument('--device', default=None)
    ap.add_argument('--batch-size', type=int, default=4, help="pairs per forward pass (the first version's 4)")
    ap.add_argument('--output', default=None, help='also write the JSON here')
    args = ap.parse_args(argv)
    if args.candidates < 1: ap.error('--candidates must be at least 1')
    device = default_device(args.device)
    dtype = autocast_dtype(device) or torch.float32
    with Timer() as t_build: model, processor = build(args.arch, dtype)
    ce = CrossEncoder.from_model(model, processor, device=device, batch_size=args.batch_size, use_enc_token=False)
    with tempfile.TemporaryDirectory() as tmp:
        gallery = make_sample_dataset(tmp, n=args.candidates, size=256)
        images = [gallery.image(i) for i in gallery.image_ids]   # decoded once: every design gets the same PIL images
        per_pair(ce, args.arch, images[:1], 1)                  # warm-up (allocator, kernels)
        with Timer(device) as t_uncached: uncached = per_pair(ce, args.arch, images, args.batch_size)
        ce.store = FeatureStore(model_id='bench')
        with Timer(device) as t_cold: cold = ce.score(QUERY, images)
        with Timer(device) as t_warm: warm = ce.score(QUERY, images)
    out = dict(arch=args.arch, candidates=args.candidates, device=str(device), dtype=str(dtype).removeprefix('torch.'),
               batch_size=args.batch_size, uncached_s=round(t_uncached.seconds, 3), cached_cold_s=round(t_cold.seconds, 3),
               cached_warm_s=round(t_warm.seconds, 3), speedup_cold=round(t_uncached.seconds / t_cold.seconds, 2),
               speedup_warm=round(t_uncached.seconds / t_warm.seconds, 2),
               max_abs_diff=float(max(np.abs(uncached - cold).max(), np.abs(uncached - warm).max())),
               model_build_s=round(t_build.seconds, 1), params_millions=round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
               torch=torch.__version__, transformers=transformers.__version__, threads=torch.get_num_threads(),
               cpu_count=os.cpu_count(), machine=platform.machine(),
               gpu=torch.cuda.get_device_name(device) if device.type == 'cuda' else None)
    text = json.dumps(out)
    print(text)
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, 'w') as f: f.write(json.dumps(out, indent=2) + '\n')
    return out

if __name__ == '__main__': main()
