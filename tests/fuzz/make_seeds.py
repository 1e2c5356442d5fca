#!/usr/bin/env python3
"""Writes the binary seed inputs of tests/fuzz/corpus (safetensors files, token files, a small
EC02 block-compressed text); the text seeds are checked in as written by hand."""
import json
import os
import struct

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    with open(os.path.join(here, target, name), "wb") as f:
        f.write(data)


def safetensors(tensors, metadata=None):
    """tensors: list of (name, dtype, shape, raw bytes), in data order."""
    header, pos, blob = {}, 0, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [pos, pos + len(raw)]}
        pos += len(raw)
        blob += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + blob


put("safetensors", "f32_bf16.safetensors", safetensors([
    ("a.weight", "F32", [2, 3], struct.pack("<6f", 1, 2, 3, 4, 5, 6)),
    ("b.bias", "BF16", [3], struct.pack("<3H", 0x3f80, 0x4000, 0xc040)),
], {"format": "pt"}))
put("safetensors", "widened.safetensors", safetensors([
    ("d", "F64", [2], struct.pack("<2d", 0.5, -1.0)),
    ("u8", "U8", [4], bytes([0, 1, 254, 255])),
    ("i8", "I8", [2], bytes([0x80, 0x7f])),
    ("u16", "U16", [2], struct.pack("<2H", 1, 65535)),
    ("i16", "I16", [2], struct.pack("<2h", -32768, 7)),
    ("b", "BOOL", [2], bytes([0, 1])),
    ("u32", "U32", [1], struct.pack("<I", 0xffffffff)),
    ("i64", "I64", [1, 1], struct.pack("<q", -5)),
    ("i32", "I32", [], struct.pack("<i", 42)),
    ("f16", "F16", [0, 3], b""),
]))

put("tokens", "u8_vocab256", bytes([0]) + b"In the beginning God created the heaven and the earth.")
put("tokens", "u16_vocab50257", bytes([1 | 2 << 2]) + struct.pack("<12H", *range(0, 50257, 4200)))
put("tokens", "u32_vocab1000", bytes([2 | 1 << 2]) + struct.pack("<10I", *range(0, 1000, 100)))
put("tokens", "text", bytes([3]) + b"Ge1:1 In the beginning God created the heaven and the earth.\n")


def lzw9(data):
    """compress(1)-style LZW, 9-bit codes only (input short enough that the table stays < 512)."""
    table = {bytes([i]): i for i in range(256)}
    nxt, codes, w = 257, [], b""
    for c in data:
        wc = w + bytes([c])
        if wc in table:
            w = wc
            continue
        codes.append(table[w])
        table[wc] = nxt
        nxt += 1
        w = bytes([c])
    if w:
        codes.append(table[w])
    assert nxt <= 512
    bits = 0
    for i, code in enumerate(codes):
        bits |= code << (9 * i)
    return bits.to_bytes((9 * len(codes) + 7) // 8, "little")


# EC02: magic, big-endian block size at 0x54, block count at 0x58, count+1 block offsets at 0x5c,
# the 3-byte .Z header (1f 9d, block mode | 16 bits) just before the first block.
blocks = [b"Ge1:1 In the beginning God created the heaven and the earth.\n"[:32],
          b"Ge1:2 And the earth\n"]
size = 32
streams = [lzw9(b) for b in blocks]
first = 0x5c + 4 * (len(blocks) + 1) + 3
offs = [first]
for s in streams:
    offs.append(offs[-1] + len(s))
head = bytearray(b"EC02" + bytes(0x54 - 4))
head += struct.pack(">II", size, len(blocks)) + b"".join(struct.pack(">I", o) for o in offs)
head += bytes([0x1f, 0x9d, 0x80 | 16])
put("tokens", "ec02_text", bytes([3]) + bytes(head) + b"".join(streams))
