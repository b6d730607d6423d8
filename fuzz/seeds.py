#!/usr/bin/env python3
"""Seed corpora for the fuzz targets, made from the real files.

usage: fuzz/seeds.py OUTDIR LMC_BINARY

OUTDIR/<target>/ receives:
  safetensors  the header of every real .safetensors file (data/, ../shared),
               with its data area cut off, and a small valid file per real
               file (same names, dtypes and metadata, each shape cut to at
               most 2 x 3, the first bytes of the real tensor as data)
  config       every real config.json, tests/fixtures/configs/*, and the
               "config" object of each container seed
  tokenizer    tests/fixtures/tokenizer/*, and each real tokenizer.json with
               its vocabulary cut to the first 460 ids (the special and
               byte tokens and about 200 more) and the merges among them;
               each followed by a NUL
               and a line of data/eval.txt (the target encodes what follows
               the first NUL)
  container    a one-block checkpoint cut out of data/llama-xs (its real
               weights' leading rows and columns, the cut tokenizer) written
               by `lmc convert` and by every pass, one encoding each
Only the standard library: runs wherever the tests run."""
import glob
import json
import os
import struct
import subprocess
import sys

out, lmc = sys.argv[1], sys.argv[2]
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.chdir(root)
models = ['data/llama-xs'] + sorted(glob.glob('../shared/models/*'))


seen = set()


def put(target, name, data):
    """OUTDIR/target/name, unless the same bytes are there already (the
    shared llama-xs is data/llama-xs)."""
    data = data if isinstance(data, bytes) else data.encode()
    if (target, data) in seen:
        return
    seen.add((target, data))
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)


def tag(path):
    return path.replace('../shared/models/', 'shared-').replace('/', '-')


def read_st(path):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    return b, n, json.loads(b[8:8 + n])


def write_st(header, blobs):
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * (-len(h) % 8)
    return struct.pack('<Q', len(h)) + h + b''.join(blobs)


# ---- safetensors
ESZ = {'F16': 2, 'BF16': 2, 'F32': 4, 'I64': 8, 'I32': 4, 'U8': 1, 'BOOL': 1}
for m in models:
    for p in sorted(glob.glob(m + '/*.safetensors')):
        b, n, hdr = read_st(p)
        put('safetensors', tag(p) + '.header', b[:8 + n])
        small, blobs, off = {}, [], 0
        if '__metadata__' in hdr:
            small['__metadata__'] = hdr['__metadata__']
        for name, t in hdr.items():
            if name == '__metadata__':
                continue
            shape = [min(d, 2 if i == 0 else 3) for i, d in enumerate(t['shape'])]
            k = ESZ[t['dtype']]
            for d in shape:
                k *= d
            begin = 8 + n + t['data_offsets'][0]
            blobs.append(b[begin:begin + k])
            small[name] = {'dtype': t['dtype'], 'shape': shape, 'data_offsets': [off, off + k]}
            off += k
        put('safetensors', tag(p) + '.small', write_st(small, blobs))

# ---- tokenizer
text = [l for l in open('data/eval.txt', encoding='utf-8').read().splitlines() if l.strip()]
for p in sorted(glob.glob('tests/fixtures/tokenizer/*.json')):
    put('tokenizer', os.path.basename(p), open(p, 'rb').read() + b'\0' + text[0].encode())


def cut_tokenizer(tok, keep):
    """The tokenizer with its vocabulary cut to the ids below `keep` (real
    vocabularies start with the special and the byte tokens) and the merges
    among them; ids are unchanged, so added tokens and templates still hold."""
    v = {k: i for k, i in tok['model']['vocab'].items() if i < keep}
    merges = []
    for mg in tok['model'].get('merges', []):
        a, c = mg.split(' ', 1) if isinstance(mg, str) else mg
        if a in v and c in v and a + c in v:
            merges.append(mg)
    return dict(tok, model=dict(tok['model'], vocab=v, merges=merges))


cut = {}
for m in models:
    p = m + '/tokenizer.json'
    if os.path.exists(p):
        t = cut_tokenizer(json.load(open(p, encoding='utf-8')), 460)
        cut[m] = t
        s = json.dumps(t, ensure_ascii=False).encode()
        for i in range(2):
            put('tokenizer', '%s.cut%d' % (tag(p), i), s + b'\0' + text[1 + i].encode())

# ---- container: one block of llama-xs, written by every command
src = 'data/llama-xs'
cfg = json.load(open(src + '/config.json'))
tok = cut['data/llama-xs']
H, NH, NKV, HD, F = 16, 2, 1, 8, 32
V = max(tok['model']['vocab'].values()) + 1
cfg.update(hidden_size=H, num_attention_heads=NH, num_key_value_heads=NKV, head_dim=HD,
           intermediate_size=F, num_hidden_layers=1, vocab_size=V, max_position_embeddings=64)
b, n, hdr = read_st(src + '/model.safetensors')
want = {'model.embed_tokens.weight': [V, H], 'model.norm.weight': [H]}
for k, s in {'input_layernorm': [H], 'post_attention_layernorm': [H],
             'self_attn.q_proj': [NH * HD, H], 'self_attn.k_proj': [NKV * HD, H],
             'self_attn.v_proj': [NKV * HD, H], 'self_attn.o_proj': [H, NH * HD],
             'mlp.gate_proj': [F, H], 'mlp.up_proj': [F, H], 'mlp.down_proj': [H, F]}.items():
    want['model.layers.0.%s.weight' % k] = s
small, blobs, off = {'__metadata__': {'format': 'pt'}}, [], 0
for name, shape in want.items():
    t = hdr[name]
    begin = 8 + n + t['data_offsets'][0]
    cols = t['shape'][1] if len(t['shape']) == 2 else 1
    rows = []
    for r in range(shape[0]):
        c = shape[1] if len(shape) == 2 else 1
        rows.append(b[begin + 2 * r * cols:begin + 2 * (r * cols + c)])
    blob = b''.join(rows)
    small[name] = {'dtype': t['dtype'], 'shape': shape, 'data_offsets': [off, off + len(blob)]}
    blobs.append(blob)
    off += len(blob)
ck = os.path.join(out, 'tiny-llama-ckpt')
os.makedirs(ck, exist_ok=True)
open(ck + '/config.json', 'w').write(json.dumps(cfg, indent=2))
open(ck + '/model.safetensors', 'wb').write(write_st(small, blobs))
open(ck + '/tokenizer.json', 'w', encoding='utf-8').write(json.dumps(tok, ensure_ascii=False))
calib = os.path.join(out, 'calib.txt')
open(calib, 'w', encoding='utf-8').write('\n'.join(text[:400]))

cal = ['--calib', calib, '--nsamples', '4', '--seqlen', '32', '-q', '--threads', '1']
runs = [('convert-f16', ['convert', ck]), ('convert-f32', ['convert', ck, '--dtype', 'f32']),
        ('convert-bf16', ['convert', ck, '--dtype', 'bf16']),
        ('rtn-w4g8', ['rtn', ck, '--bits', '4', '--group', '8'] + cal),
        ('rtn-w3row-sym', ['rtn', ck, '--bits', '3', '--group', '-1', '--sym'] + cal),
        ('gptq-actorder', ['gptq', ck, '--bits', '4', '--group', '8', '--act-order'] + cal),
        ('magnitude-50', ['magnitude', ck, '--sparsity', '0.5'] + cal),
        ('magnitude-nm', ['magnitude', ck, '--nm', '2:4', '--inner', 'f32'] + cal),
        ('sparsegpt-w4', ['sparsegpt', ck, '--sparsity', '0.5', '--bits', '4', '--group', '8'] + cal),
        ('sparsegpt-nm-w4', ['sparsegpt', ck, '--nm', '2:4', '--bits', '4', '--group', '8'] + cal),
        ('wanda-50', ['wanda', ck, '--sparsity', '0.5'] + cal),
        ('svd-r2', ['svd', ck, '--rank', '2'] + cal),
        ('int8', ['int8', ck, '--threshold', '0.5'] + cal),
        ('smoothquant', ['smoothquant', ck] + cal),
        ('awq-w4', ['awq', ck, '--bits', '4', '--group', '8'] + cal)]
for name, args in runs:
    dst = os.path.join(out, 'container', name + '.lmc')
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    r = subprocess.run([lmc] + args[:1] + ['-o', dst] + args[1:], capture_output=True, text=True,
                       env=dict(os.environ, SOURCE_DATE_EPOCH='0'))
    if r.returncode != 0:
        sys.exit('seeds: lmc %s failed: %s' % (' '.join(args), r.stderr.strip()))
    c = open(dst, 'rb').read()
    ver, hlen = struct.unpack('<I', c[8:12])[0], struct.unpack('<Q', c[16:24])[0]
    hoff = struct.unpack('<Q', c[24:32])[0] if ver == 2 else 24  # docs/FORMAT.md
    h = json.loads(c[hoff:hoff + hlen])
    put('config', 'container-' + name + '.json', json.dumps(h['config']))
for m in models:
    if os.path.exists(m + '/config.json'):
        put('config', tag(m) + '.json', open(m + '/config.json', 'rb').read())
put('config', 'tiny-llama.json', open(ck + '/config.json', 'rb').read())
for p in sorted(glob.glob('tests/fixtures/configs/*.json')):
    put('config', os.path.basename(p), open(p, 'rb').read())
counts = {t: len(os.listdir(os.path.join(out, t)))
          for t in ('safetensors', 'config', 'tokenizer', 'container')}
print('seeds: ' + ', '.join('%s %d' % kv for kv in counts.items()))
