#!/usr/bin/env python3
"""ref-gptq.py: the authors' GPTQ (IST-DASLab/gptq: gptq.py, quant.py,
modelutils.py) run on a Llama-family checkpoint the way their llama.py's
llama_sequential runs it, for a same-run speed ratio in
scripts/bench-passes-cuda. Not part of lmc: it needs PyTorch, transformers and
a checkout of https://github.com/IST-DASLab/gptq (Apache-2.0), given as --code.

  ref-gptq.py --code DIR --model CKPT --calib FILE [--nsamples 128]
              [--seqlen 2048] [--wbits 4] [--groupsize 128] [--seed 0]

What differs from llama.py, and why:
- windows come from --calib (tokenized with the checkpoint's tokenizer, random
  offsets as their datautils draws them), since the GPU machine is offline and
  has no wikitext;
- the first block's inputs are captured with every keyword argument the
  decoder layer gets (transformers 5 passes position_embeddings, not only
  attention_mask and position_ids) and replayed as such;
- a block returning a tensor rather than a tuple is accepted (transformers 5).
The loop itself (non-true-sequential: all linears of a block observed in one
forward, then quantized, then the block re-run) is theirs, with their GPTQ
and Quantizer classes, percdamp 0.01, blocksize 128, asymmetric per-channel.

Prints one JSON line: load, quantize (their llama_sequential's span) and total
seconds, and peak GPU memory.
"""
import argparse
import json
import os
import random
import sys
import time

t_start = time.time()
ap = argparse.ArgumentParser()
ap.add_argument("--code", required=True)
ap.add_argument("--model", required=True)
ap.add_argument("--calib", required=True)
ap.add_argument("--nsamples", type=int, default=128)
ap.add_argument("--seqlen", type=int, default=2048)
ap.add_argument("--wbits", type=int, default=4)
ap.add_argument("--groupsize", type=int, default=128)
ap.add_argument("--seed", type=int, default=0)
args = ap.parse_args()
for f in ("gptq.py", "quant.py", "modelutils.py"):
    if not os.path.isfile(os.path.join(args.code, f)):
        sys.exit(f"{args.code}: no {f} (--code wants a checkout of IST-DASLab/gptq)")
sys.path.insert(0, args.code)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import transformers  # noqa: E402

if not hasattr(transformers, "Conv1D"):  # gptq.py tests isinstance against it
    from transformers.pytorch_utils import Conv1D
    transformers.Conv1D = Conv1D
from gptq import GPTQ  # noqa: E402
from modelutils import find_layers  # noqa: E402
from quant import Quantizer  # noqa: E402

dev = torch.device("cuda:0")


def skip(*a, **k):
    pass


torch.nn.init.kaiming_uniform_ = skip  # as their get_llama
torch.nn.init.uniform_ = skip
torch.nn.init.normal_ = skip
model = transformers.AutoModelForCausalLM.from_pretrained(args.model, dtype="auto")
model.eval()
tok = transformers.AutoTokenizer.from_pretrained(args.model)
ids = tok(open(args.calib, encoding="utf-8").read(), return_tensors="pt").input_ids
if ids.shape[1] <= args.seqlen + 1:
    sys.exit(f"{args.calib}: {ids.shape[1]} tokens, too few for windows of {args.seqlen}")
random.seed(args.seed)
loader = []
for _ in range(args.nsamples):
    i = random.randint(0, ids.shape[1] - args.seqlen - 1)
    loader.append(ids[:, i:i + args.seqlen])
t_loaded = time.time()


@torch.no_grad()
def sequential():
    model.config.use_cache = False
    layers = model.model.layers
    model.model.embed_tokens = model.model.embed_tokens.to(dev)
    model.model.norm = model.model.norm.to(dev)
    if hasattr(model.model, "rotary_emb"):
        model.model.rotary_emb = model.model.rotary_emb.to(dev)
    layers[0] = layers[0].to(dev)
    dtype = next(iter(model.parameters())).dtype
    inps = torch.zeros((args.nsamples, args.seqlen, model.config.hidden_size),
                       dtype=dtype, device=dev)
    cache = {"i": 0, "kw": None}

    class Catcher(nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

        def __getattr__(self, name):  # a model may read the layer's attributes
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(self.module, name)

        def forward(self, inp, *a, **kw):
            inps[cache["i"]] = inp
            cache["i"] += 1
            cache["a"], cache["kw"] = a, kw
            raise ValueError

    layers[0] = Catcher(layers[0])
    for batch in loader:
        try:
            model(batch.to(dev))
        except ValueError:
            pass
    layers[0] = layers[0].module
    layers[0] = layers[0].cpu()
    model.model.embed_tokens = model.model.embed_tokens.cpu()
    model.model.norm = model.model.norm.cpu()
    torch.cuda.empty_cache()
    outs = torch.zeros_like(inps)
    a = cache["a"]
    kw = {k: v for k, v in cache["kw"].items() if k not in ("past_key_values", "past_key_value")}

    def run(layer, j):
        o = layer(inps[j].unsqueeze(0), *a, **kw)
        return o[0] if isinstance(o, tuple) else o

    for i in range(len(layers)):
        layer = layers[i].to(dev)
        subset = find_layers(layer)
        g = {}
        for name in subset:
            g[name] = GPTQ(subset[name])
            g[name].quantizer = Quantizer()
            g[name].quantizer.configure(args.wbits, perchannel=True, sym=False, mse=False)

        def add_batch(name):
            def tmp(_, inp, out):
                g[name].add_batch(inp[0].data, out.data)
            return tmp
        handles = [subset[n].register_forward_hook(add_batch(n)) for n in subset]
        for j in range(args.nsamples):
            outs[j] = run(layer, j)
        for h in handles:
            h.remove()
        for name in subset:
            g[name].fasterquant(percdamp=0.01, groupsize=args.groupsize)
            g[name].free()
        for j in range(args.nsamples):
            outs[j] = run(layer, j)
        layers[i] = layer.cpu()
        layer = g = None  # freed before the next block, as their del
        torch.cuda.empty_cache()
        inps, outs = outs, inps


torch.cuda.reset_peak_memory_stats()
t0 = time.time()
sequential()
torch.cuda.synchronize()
t1 = time.time()
print(json.dumps({"load": t_loaded - t_start, "quantize": t1 - t0, "total": t1 - t_start,
                  "peak_gib": torch.cuda.max_memory_allocated() / 2**30}))
