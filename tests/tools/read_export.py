#!/usr/bin/env python3
"""An independent reader of lmc's exports (python3 standard library only),
written from the published layouts, not from lmc's code:

  GGUF   ggml's gguf.h header layout and ggml-quants.c dequantize_row_*
         (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0); llama.cpp's
         converter permutes LLaMA q/k rows (undone here) and fuses GPT-2's
         q, k, v into attn_qkv (split here).
  GPTQ   AutoGPTQ's QuantLinear (qlinear_cuda_old.py): qweight int32
         [in*bits/32, out] packed along inputs (3-bit words unpacked with
         AutoGPTQ's own shift table and fix-ups), qzeros int32
         [groups, out*bits/32] holding zero - 1, scales fp16 [groups, out],
         g_idx int32 [in]; w = scale * (q - (qzero + 1)).
  AWQ    AutoAWQ's WQLinear_GEMM / dequantize_gemm: qweight int32
         [in, out/8] with nibble k of word j holding output 8j + [0,2,4,6,1,3,5,7][k],
         qzeros [in/g, out/8] likewise (raw zeros), scales fp16 [in/g, out].

  read_export.py compare gguf|gptq|awq EXPORT LMC_DUMP_DIR
      decodes every tensor of EXPORT to fp32 under lmc's canonical names and
      compares it with LMC_DUMP_DIR/<name>.f32 (tests/tools/dump_weights):
      values must be equal (+0 and -0 count as equal), and every lmc tensor
      must be present. Prints one summary line; exit 0 when all match.
  read_export.py info gguf FILE
      prints the metadata (without the token arrays) and tensor infos as JSON.
"""
import array
import json
import math
import os
import struct
import sys

# ------------------------------------------------------------------ GGUF

GGUF_SCALARS = {0: 'B', 1: 'b', 2: 'H', 3: 'h', 4: 'I', 5: 'i', 6: 'f', 7: '?', 10: 'Q', 11: 'q', 12: 'd'}


class Reader:
    def __init__(self, data):
        self.d = data
        self.p = 0

    def take(self, fmt):
        v = struct.unpack_from('<' + fmt, self.d, self.p)
        self.p += struct.calcsize('<' + fmt)
        return v[0] if len(v) == 1 else v

    def string(self):
        n = self.take('Q')
        s = self.d[self.p:self.p + n].decode('utf-8', 'surrogateescape')
        self.p += n
        return s

    def value(self, t):
        if t == 8:
            return self.string()
        if t == 9:
            et, n = self.take('I'), self.take('Q')
            return [self.value(et) for _ in range(n)]
        return self.take(GGUF_SCALARS[t])


def gguf_open(path):
    data = open(path, 'rb').read()
    r = Reader(data)
    if data[:4] != b'GGUF':
        raise SystemExit(f'{path}: not a GGUF file')
    r.p = 4
    version, nt, nkv = r.take('I'), r.take('Q'), r.take('Q')
    if version != 3:
        raise SystemExit(f'{path}: GGUF version {version}')
    kv = {}
    for _ in range(nkv):
        k = r.string()
        kv[k] = r.value(r.take('I'))
    tensors = []
    for _ in range(nt):
        name = r.string()
        nd = r.take('I')
        ne = [r.take('Q') for _ in range(nd)]
        tensors.append({'name': name, 'ne': ne, 'type': r.take('I'), 'offset': r.take('Q')})
    align = kv.get('general.alignment', 32)
    start = (r.p + align - 1) // align * align
    for t in tensors:
        t['data_start'] = start + t['offset']
    return data, kv, tensors


def f32(v):
    return struct.unpack('<f', struct.pack('<f', v))[0]


def half(data, off):
    return struct.unpack_from('<e', data, off)[0]


BLOCK = {2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34)}


def dequant_row(data, off, typ, n):
    """One row of n values: ggml-quants.c dequantize_row_* (fp32 arithmetic)."""
    out = []
    if typ == 0:
        return list(struct.unpack_from(f'<{n}f', data, off))
    if typ == 1:
        return list(struct.unpack_from(f'<{n}e', data, off))
    if typ == 30:
        return [struct.unpack('<f', struct.pack('<I', h << 16))[0]
                for h in struct.unpack_from(f'<{n}H', data, off)]
    qk, bs = BLOCK[typ]
    for b in range(n // qk):
        o = off + b * bs
        d = half(data, o)
        if typ == 2:  # Q4_0: (q - 8) * d, low nibbles elements 0..15, high 16..31
            qs = data[o + 2:o + 18]
            vals = [((qs[j] & 15) - 8) * d for j in range(16)] + [((qs[j] >> 4) - 8) * d for j in range(16)]
            out += [f32(v) for v in vals]
        elif typ == 3:  # Q4_1: q * d + m
            m = half(data, o + 2)
            qs = data[o + 4:o + 20]
            xs = [qs[j] & 15 for j in range(16)] + [qs[j] >> 4 for j in range(16)]
            out += [f32(f32(x * d) + m) for x in xs]
        elif typ in (6, 7):  # Q5_0: (q - 16) * d; Q5_1: q * d + m; 5th bits in qh
            m = half(data, o + 2) if typ == 7 else 0.0
            qo = o + (4 if typ == 7 else 2)
            qh = struct.unpack_from('<I', data, qo)[0]
            qs = data[qo + 4:qo + 20]
            xs = [(qs[j] & 15) | (((qh >> j) << 4) & 0x10) for j in range(16)] + \
                 [(qs[j] >> 4) | ((qh >> (j + 12)) & 0x10) for j in range(16)]
            if typ == 6:
                out += [f32((x - 16) * d) for x in xs]
            else:
                out += [f32(f32(x * d) + m) for x in xs]
        elif typ == 8:  # Q8_0: q * d
            qs = struct.unpack_from('<32b', data, o + 2)
            out += [f32(q * d) for q in qs]
    return out


def row_bytes(typ, n):
    if typ == 0:
        return 4 * n
    if typ in (1, 30):
        return 2 * n
    qk, bs = BLOCK[typ]
    return n // qk * bs


GGUF_NAMES = {'token_embd': 'embed', 'position_embd': 'pos_embed', 'output_norm': 'final_norm',
              'output': 'head', 'attn_norm': 'attn_norm', 'attn_q': 'q', 'attn_k': 'k', 'attn_v': 'v',
              'attn_output': 'o', 'ffn_norm': 'ffn_norm', 'ffn_gate': 'gate', 'ffn_up': 'up',
              'ffn_down': 'down'}


def unpermute(rows, heads):
    """Rows as Hugging Face had them: new row h*d + 2i + j held old row h*d + j*d/2 + i."""
    d = len(rows) // heads
    old = [None] * len(rows)
    for h in range(heads):
        for i in range(d // 2):
            for j in range(2):
                old[h * d + j * (d // 2) + i] = rows[h * d + 2 * i + j]
    return old


def read_gguf(path):
    data, kv, tensors = gguf_open(path)
    arch = kv['general.architecture']
    nh = kv[f'{arch}.attention.head_count']
    nkv = kv.get(f'{arch}.attention.head_count_kv', nh)
    hd = kv.get(f'{arch}.attention.key_length', kv[f'{arch}.embedding_length'] // nh)
    out = {}
    for t in tensors:
        parts = t['name'].split('.')
        if parts[0] == 'rope_freqs':
            continue
        cols = t['ne'][0]
        nrows = t['ne'][1] if len(t['ne']) > 1 else 1
        rb = row_bytes(t['type'], cols)
        rows = [dequant_row(data, t['data_start'] + r * rb, t['type'], cols) for r in range(nrows)]
        if len(t['ne']) == 1:  # a vector: its elements are the rows for the permutation
            rows = [[v] for v in rows[0]]
        if parts[0] == 'blk':
            role, kind = parts[2], parts[3]
            prefix = f'blk.{parts[1]}.'
        else:
            role, kind, prefix = parts[0], parts[1], ''
        if role == 'attn_qkv':
            sizes = [nh * hd, nkv * hd, nkv * hd]
            at = 0
            for r, sz in zip('qkv', sizes):
                out[f'{prefix}{r}.{kind}'] = rows[at:at + sz]
                at += sz
            continue
        if arch == 'llama' and role in ('attn_q', 'attn_k'):
            rows = unpermute(rows, nh if role == 'attn_q' else nkv)
        out[prefix + GGUF_NAMES[role] + '.' + kind] = rows
    return {k: [x for r in v for x in r] for k, v in out.items()}

# --------------------------------------------------------- safetensors / HF


def read_safetensors(path):
    data = open(path, 'rb').read()
    n = struct.unpack_from('<Q', data, 0)[0]
    hdr = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, t in hdr.items():
        if name == '__metadata__':
            continue
        b, e = t['data_offsets']
        out[name] = (t['dtype'], t['shape'], data[base + b:base + e])
    return out


def as_list(dtype, raw):
    if dtype == 'F32':
        return array.array('f', raw).tolist()
    if dtype == 'F16':
        return list(struct.unpack(f'<{len(raw) // 2}e', raw))
    if dtype == 'BF16':
        return [struct.unpack('<f', struct.pack('<I', h << 16))[0]
                for h in struct.unpack(f'<{len(raw) // 2}H', raw)]
    if dtype == 'I32':
        return array.array('i', raw).tolist()
    raise SystemExit(f'unexpected dtype {dtype}')


def transpose(flat, rows, cols):
    return [flat[r * cols + c] for c in range(cols) for r in range(rows)]


def hf_canon(name, model_type):
    """Hugging Face tensor name -> (canonical name, 'plain'|'conv1d'|'qkv')."""
    p = name.split('.')
    if name == 'lm_head.weight':
        return 'head.weight', 'plain'
    if model_type == 'gpt2':
        if p[0] == 'transformer':
            p = p[1:]
        top = {'wte': 'embed', 'wpe': 'pos_embed', 'ln_f': 'final_norm'}
        if p[0] in top:
            return f'{top[p[0]]}.{p[1]}', 'plain'
        layer, rest = p[1], '.'.join(p[2:-1])
        m = {'ln_1': ('attn_norm', 'plain'), 'attn.c_attn': ('qkv', 'qkv'),
             'attn.c_proj': ('o', 'conv1d'), 'ln_2': ('ffn_norm', 'plain'),
             'mlp.c_fc': ('up', 'conv1d'), 'mlp.c_proj': ('down', 'conv1d')}[rest]
        return f'blk.{layer}.{m[0]}.{p[-1]}', m[1] if p[-1] == 'weight' else ('qkv' if m[1] == 'qkv' else 'plain')
    if model_type == 'opt':
        p = p[2:] if p[:2] == ['model', 'decoder'] else p
        top = {'embed_tokens': 'embed', 'embed_positions': 'pos_embed', 'final_layer_norm': 'final_norm'}
        if p[0] in top:
            return f'{top[p[0]]}.{p[1]}', 'plain'
        layer, rest = p[1], '.'.join(p[2:-1])
        m = {'self_attn_layer_norm': 'attn_norm', 'self_attn.q_proj': 'q', 'self_attn.k_proj': 'k',
             'self_attn.v_proj': 'v', 'self_attn.out_proj': 'o', 'final_layer_norm': 'ffn_norm',
             'fc1': 'up', 'fc2': 'down'}[rest]
        return f'blk.{layer}.{m}.{p[-1]}', 'plain'
    p = p[1:] if p[0] == 'model' else p
    top = {'embed_tokens': 'embed', 'norm': 'final_norm'}
    if p[0] in top:
        return f'{top[p[0]]}.{p[1]}', 'plain'
    layer, rest = p[1], '.'.join(p[2:-1])
    m = {'input_layernorm': 'attn_norm', 'self_attn.q_proj': 'q', 'self_attn.k_proj': 'k',
         'self_attn.v_proj': 'v', 'self_attn.o_proj': 'o', 'post_attention_layernorm': 'ffn_norm',
         'mlp.gate_proj': 'gate', 'mlp.up_proj': 'up', 'mlp.down_proj': 'down'}[rest]
    return f'blk.{layer}.{m}.{p[-1]}', 'plain'


def gptq_unpack_rows(words, nrows_packed, ncols, bits):
    """AutoGPTQ: int32 [nrows_packed, ncols] packed along dim 0 -> codes
    [nrows_packed * 32 / bits][ncols]. 2/4/8 bits: shifts range(0, 32, bits);
    3 bits: AutoGPTQ's wf table over three words with its two fix-ups."""
    out = []
    w = lambda r, c: words[r * ncols + c] & 0xffffffff
    if bits in (2, 4, 8):
        per = 32 // bits
        for r in range(nrows_packed):
            for k in range(per):
                out.append([(w(r, c) >> (bits * k)) & ((1 << bits) - 1) for c in range(ncols)])
        return out
    assert bits == 3
    wf = [[0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 0],
          [0, 1, 4, 7, 10, 13, 16, 19, 22, 25, 28, 31],
          [0, 2, 5, 8, 11, 14, 17, 20, 23, 26, 29, 0]]
    for r3 in range(nrows_packed // 3):
        wd = [[w(3 * r3 + k, c) for c in range(ncols)] for k in range(3)]
        t = [[[(wd[k][c] >> wf[k][j]) & 0x7 for c in range(ncols)] for j in range(12)] for k in range(3)]
        for c in range(ncols):
            t[0][10][c] = ((wd[0][c] >> 30) & 0x3) | ((wd[1][c] << 2) & 0x4)
            t[1][11][c] = ((wd[1][c] >> 31) & 0x1) | ((wd[2][c] << 1) & 0x6)
        out += t[0][:11] + t[1][1:12] + t[2][1:11]
    return out


def gptq_unpack_cols(words, nrows, ncols_packed, bits):
    """The same packing along dim 1 (qzeros): -> [nrows][ncols_packed * 32 / bits]."""
    tr = [words[r * ncols_packed + c] for c in range(ncols_packed) for r in range(nrows)]
    rows = gptq_unpack_rows(tr, ncols_packed, nrows, bits)  # [cols][nrows]
    return [[rows[c][r] for c in range(len(rows))] for r in range(nrows)]


AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]


def awq_unpack(words, nrows, ncols_packed):
    out = []
    for r in range(nrows):
        row = [0] * (ncols_packed * 8)
        for j in range(ncols_packed):
            v = words[r * ncols_packed + j] & 0xffffffff
            for k in range(8):
                row[8 * j + AWQ_ORDER[k]] = (v >> (4 * k)) & 15
        out.append(row)
    return out


def read_hf(dirpath, kind):
    cfg = json.load(open(os.path.join(dirpath, 'config.json')))
    qc = cfg['quantization_config']
    model_type = cfg['model_type']
    st = read_safetensors(os.path.join(dirpath, 'model.safetensors'))
    bits, gsz = qc['bits'], qc['group_size']
    if kind == 'gptq':
        assert qc['quant_method'] == 'gptq' and qc.get('checkpoint_format', 'gptq') == 'gptq', qc
    else:
        assert qc['quant_method'] == 'awq' and qc['version'] == 'gemm' and bits == 4 and qc['zero_point'], qc
    out = {}
    modules = sorted({n[:-len('.qweight')] for n in st if n.endswith('.qweight')})
    for mod in modules:
        qw = st[mod + '.qweight']
        qz = st[mod + '.qzeros']
        sc = st[mod + '.scales']
        assert qw[0] == 'I32' and qz[0] == 'I32' and sc[0] == 'F16', mod
        scales = as_list('F16', sc[2])
        if kind == 'gptq':
            inf, outf = qw[1][0] * 32 // bits, qw[1][1]
            g = gsz if gsz != -1 else inf
            ng = math.ceil(inf / g)
            # the buffer shapes AutoGPTQ's QuantLinear registers
            assert qw[1] == [inf // 32 * bits, outf], (mod, qw[1])
            assert qz[1] == [ng, outf // 32 * bits], (mod, qz[1])
            assert sc[1] == [ng, outf], (mod, sc[1])
            gi = as_list('I32', st[mod + '.g_idx'][2])
            assert st[mod + '.g_idx'][1] == [inf]
            if not qc['desc_act']:  # loaders may then use i // group instead of g_idx
                assert gi == [i // g for i in range(inf)], mod
            codes = gptq_unpack_rows(as_list('I32', qw[2]), qw[1][0], outf, bits)  # [in][out]
            zeros = [[z + 1 for z in row] for row in gptq_unpack_cols(as_list('I32', qz[2]), ng, qz[1][1], bits)]
        else:
            inf, outf = qw[1][0], qw[1][1] * 8
            ng = inf // gsz
            assert inf % gsz == 0 and qz[1] == [ng, outf // 8] and sc[1] == [ng, outf], mod
            gi = [i // gsz for i in range(inf)]
            codes = awq_unpack(as_list('I32', qw[2]), inf, qw[1][1])
            zeros = awq_unpack(as_list('I32', qz[2]), ng, qz[1][1])
        # w[o][i] = scale * (q - zero) in fp32 (one rounding of an exact product)
        w = [f32(scales[gi[i] * outf + o] * (codes[i][o] - zeros[gi[i]][o]))
             for o in range(outf) for i in range(inf)]
        canon, layout = hf_canon(mod + '.weight', model_type)
        put(out, canon, layout, w, outf, inf, cfg, transposed=False)
    for name, (dtype, shape, raw) in st.items():
        if any(name.startswith(m + '.') and name[len(m) + 1:] in ('qweight', 'qzeros', 'scales', 'g_idx')
               for m in modules):
            continue
        canon, layout = hf_canon(name, model_type)
        vals = as_list(dtype, raw)
        if len(shape) == 2 and layout in ('conv1d', 'qkv'):  # Conv1D [in, out]
            put(out, canon, layout, transpose(vals, shape[0], shape[1]), shape[1], shape[0], cfg, True)
        else:
            put(out, canon, layout, vals, shape[0], shape[1] if len(shape) == 2 else 1, cfg, True)
    return out


def put(out, canon, layout, w, rows, cols, cfg, transposed):
    """Store [rows][cols] under canon; GPT-2's fused q|k|v rows are split."""
    if layout == 'qkv':
        h = cfg['n_embd']
        base = canon.rsplit('.', 2)
        for j, r in enumerate('qkv'):
            out[f'{base[0]}.{r}.{base[2]}'] = w[j * h * cols:(j + 1) * h * cols]
        return
    out[canon] = w

# --------------------------------------------------------------- compare


def compare(kind, path, dump):
    got = read_gguf(path) if kind == 'gguf' else read_hf(path, kind)
    bad, n, checked = [], 0, 0
    for f in sorted(os.listdir(dump)):
        name = f[:-4]
        ref = array.array('f', open(os.path.join(dump, f), 'rb').read())
        if name not in got:
            bad.append(f'{name}: missing from the export')
            continue
        v = got.pop(name)
        if len(v) != len(ref):
            bad.append(f'{name}: {len(v)} values, lmc has {len(ref)}')
            continue
        for i, (a, b) in enumerate(zip(v, ref)):
            if a != b and not (math.isnan(a) and math.isnan(b)):
                bad.append(f'{name}[{i}]: export {a!r}, lmc {b!r}')
                break
        checked += 1
        n += len(ref)
    bad += [f'{k}: in the export only' for k in got]
    if bad:
        print(f'MISMATCH: {len(bad)} tensors differ; ' + '; '.join(bad[:5]))
        return 1
    print(f'ok: {checked} tensors, {n} values equal')
    return 0


def main(argv):
    if len(argv) == 5 and argv[1] == 'compare' and argv[2] in ('gguf', 'gptq', 'awq'):
        return compare(argv[2], argv[3], argv[4])
    if len(argv) == 4 and argv[1] == 'info' and argv[2] == 'gguf':
        _, kv, tensors = gguf_open(argv[3])
        kv = {k: (f'[{len(v)} items]' if isinstance(v, list) and len(v) > 16 else v) for k, v in kv.items()}
        print(json.dumps({'kv': kv, 'tensors': tensors}, indent=1))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv))
