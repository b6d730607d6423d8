#!/usr/bin/env python3
"""make_variant.py SRC DST KIND: test fixtures derived from a LLaMA checkpoint
(python3 standard library only), for the architectures and RoPE scalings
the GGUF exporter maps but the shipped models do not exercise. The weights
stay the trained ones, so the perplexities stay meaningful:

  qwen2         model_type qwen2 (NeoX RoPE in llama.cpp, no q/k permutation)
                with q/k/v biases added: fp16 values 0.02 * sin(1.3 i + 7 l + r)
  rope-linear   rope_parameters {rope_type linear, factor 2}
  rope-llama3   rope_parameters {rope_type llama3, factor 8, low 1, high 4,
                original_max_position_embeddings 256}

SRC must hold one model.safetensors; tokenizer and generation files are copied.
"""
import json
import math
import os
import shutil
import struct
import sys


def read_st(path):
    data = open(path, 'rb').read()
    n = struct.unpack_from('<Q', data, 0)[0]
    hdr = json.loads(data[8:8 + n])
    meta = hdr.pop('__metadata__', None)
    t = {k: (v['dtype'], v['shape'], data[8 + n + v['data_offsets'][0]:8 + n + v['data_offsets'][1]])
         for k, v in hdr.items()}
    return t, meta


def write_st(path, tensors, meta):
    hdr, off, blobs = {}, 0, []
    for name in sorted(tensors):
        dtype, shape, raw = tensors[name]
        hdr[name] = {'dtype': dtype, 'shape': shape, 'data_offsets': [off, off + len(raw)]}
        off += len(raw)
        blobs.append(raw)
    if meta:
        hdr['__metadata__'] = meta
    h = json.dumps(hdr, separators=(',', ':')).encode()
    h += b' ' * (-len(h) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)) + h)
        for b in blobs:
            f.write(b)


def main(src, dst, kind):
    cfg = json.load(open(os.path.join(src, 'config.json')))
    tensors, meta = read_st(os.path.join(src, 'model.safetensors'))
    os.makedirs(dst, exist_ok=True)
    if kind == 'qwen2':
        cfg['model_type'] = 'qwen2'
        cfg['architectures'] = ['Qwen2ForCausalLM']
        cfg['use_sliding_window'] = False
        for k in ('attention_bias', 'mlp_bias', 'pretraining_tp'):
            cfg.pop(k, None)
        nh, nkv = cfg['num_attention_heads'], cfg['num_key_value_heads']
        hd = cfg.get('head_dim') or cfg['hidden_size'] // nh
        for layer in range(cfg['num_hidden_layers']):
            for r, rows in (('q', nh * hd), ('k', nkv * hd), ('v', nkv * hd)):
                vals = [0.02 * math.sin(1.3 * i + 7 * layer + ord(r)) for i in range(rows)]
                tensors[f'model.layers.{layer}.self_attn.{r}_proj.bias'] = \
                    ('F16', [rows], struct.pack(f'<{rows}e', *vals))
    elif kind == 'rope-linear':
        cfg['rope_parameters'] = {'rope_type': 'linear', 'factor': 2.0,
                                  'rope_theta': cfg.get('rope_parameters', {}).get('rope_theta', 10000.0)}
    elif kind == 'rope-llama3':
        cfg['rope_parameters'] = {'rope_type': 'llama3', 'factor': 8.0, 'low_freq_factor': 1.0,
                                  'high_freq_factor': 4.0, 'original_max_position_embeddings': 256,
                                  'rope_theta': cfg.get('rope_parameters', {}).get('rope_theta', 10000.0)}
    else:
        raise SystemExit(f'unknown variant {kind}')
    json.dump(cfg, open(os.path.join(dst, 'config.json'), 'w'), indent=2)
    write_st(os.path.join(dst, 'model.safetensors'), tensors, meta)
    for f in ('tokenizer.json', 'tokenizer_config.json', 'generation_config.json'):
        if os.path.exists(os.path.join(src, f)):
            shutil.copy(os.path.join(src, f), os.path.join(dst, f))


if __name__ == '__main__':
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    main(*sys.argv[1:])
