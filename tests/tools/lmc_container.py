"""Read and write .lmc containers (docs/FORMAT.md) from the shell tests, to
craft bad inputs; an independent reading of the spec, not the C code."""
import json
import struct
import zlib

MAGIC = b'\x89LMC\r\n\x1a\n'


def read(path):
    """(header dict, data area bytes) of a version 1 or 2 container."""
    b = open(path, 'rb').read()
    assert b[:8] == MAGIC, path + ': magic'
    ver, _, hlen = struct.unpack_from('<IIQ', b, 8)
    if ver == 2:
        hoff, = struct.unpack_from('<Q', b, 24)
        return json.loads(b[hoff:hoff + hlen]), b[64:hoff]
    assert ver == 1, path + ': version'
    ds = (24 + hlen + 63) // 64 * 64
    return json.loads(b[24:24 + hlen]), b[ds:]


def write(path, header, data):
    """A version 2 container; the blob CRCs in header are taken as given."""
    header = dict(header, format_version=2)
    h = json.dumps(header, separators=(',', ':')).encode()
    pre = MAGIC + struct.pack('<IIQQ', 2, zlib.crc32(h), len(h), 64 + len(data))
    open(path, 'wb').write(pre + bytes(32) + bytes(data) + h)
