#!/usr/bin/env python3
"""dsv4-widen-experts — a checkpoint with many routed experts, fast, for the
memory-budget bench (docs/memory.md).

Writing a 256-expert flash-slice with dsv4-synth draws every byte from its
generator (hours on a busy 2-core machine). This copies a checkpoint
(normally the 8-expert flash-slice) and gives every layer N experts whose
tensors repeat the source experts' bytes (expert e = source expert e mod
n_src), one shard per layer's experts; the routers get fresh random rows
(BF16/F32 gate weights and biases, hash tables with distinct ids in [0, N)),
so tokens spread over all N experts. Outputs are meaningless; sizes,
layouts and routing spread are those of a real checkpoint of that width.

usage: dsv4-widen-experts.py SRC DST [--experts N] [--seed S]
"""
import json
import os
import random
import struct
import sys
from array import array


def read_header(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        h = json.loads(f.read(n))
    h.pop('__metadata__', None)
    return h, 8 + n


def rand_bf16(rng, count, scale_exp=120):
    a = array('H', bytes(2 * count))
    for i in range(count):
        a[i] = (rng.getrandbits(1) << 15) | ((scale_exp + rng.randrange(6)) << 7) | rng.getrandbits(7)
    return a.tobytes()


def rand_f32(rng, count):
    return array('f', [rng.uniform(-0.05, 0.05) for _ in range(count)]).tobytes()


def main():
    args = sys.argv[1:]
    if len(args) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    src, dst = args[0], args[1]
    n_exp, seed = 256, 1
    rest = args[2:]
    while rest:
        if rest[0] == '--experts' and len(rest) > 1:
            n_exp = int(rest[1])
        elif rest[0] == '--seed' and len(rest) > 1:
            seed = int(rest[1])
        else:
            print(__doc__, file=sys.stderr)
            return 2
        rest = rest[2:]
    rng = random.Random(seed)
    cfg = json.load(open(os.path.join(src, 'config.json')))
    n_src, K = cfg['n_routed_experts'], cfg['num_experts_per_tok']
    index = json.load(open(os.path.join(src, 'model.safetensors.index.json')))
    shards = sorted(set(index['weight_map'].values()))
    tensors = {}  # name -> (file, dtype, shape, begin, end)
    for sh in shards:
        h, base = read_header(os.path.join(src, sh))
        for k, v in h.items():
            tensors[k] = (os.path.join(src, sh), v['dtype'], v['shape'], base + v['data_offsets'][0],
                          base + v['data_offsets'][1])
    os.makedirs(dst, exist_ok=True)
    cfg['n_routed_experts'] = n_exp
    json.dump(cfg, open(os.path.join(dst, 'config.json'), 'w'), indent=2)
    # groups: everything but the routed experts, then each layer's experts
    out = {'rest': []}
    prefixes = []
    for name in sorted(tensors):
        if '.ffn.experts.' in name:
            p = name.split('.ffn.experts.')[0]
            if p not in out:
                out[p] = []
                prefixes.append(p)
            continue
        out['rest'].append(name)
    files = {}
    groups = ['rest'] + prefixes
    for gi, g in enumerate(groups):
        files[g] = 'model-%05d-of-%05d.safetensors' % (gi + 1, len(groups))
    weight_map = {}
    fds = {}
    total = 0

    def src_bytes(name):
        path, _, _, b, e = tensors[name]
        if path not in fds:
            fds[path] = open(path, 'rb')
        f = fds[path]
        f.seek(b)
        return f.read(e - b)

    for g in groups:
        entries = []  # (name, dtype, shape, producer)
        if g == 'rest':
            for name in out['rest']:
                _, dt, shape, b, e = tensors[name]
                if '.ffn.gate.' in name and shape and shape[0] == n_src:
                    shape = [n_exp] + shape[1:]
                    cnt = 1
                    for s in shape:
                        cnt *= s
                    if dt == 'BF16':
                        entries.append((name, dt, shape, lambda c=cnt: rand_bf16(rng, c)))
                    elif dt == 'F32':
                        entries.append((name, dt, shape, lambda c=cnt: rand_f32(rng, c)))
                    else:
                        raise SystemExit('unexpected router tensor %s %s' % (name, dt))
                elif name.endswith('.ffn.gate.tid2eid'):
                    def tid(shape=shape):
                        a = array('q', bytes(8 * shape[0] * shape[1]))
                        pool = list(range(n_exp))
                        for r in range(shape[0]):
                            a[r * K:(r + 1) * K] = array('q', rng.sample(pool, K))
                        return a.tobytes()
                    entries.append((name, dt, shape, tid))
                else:
                    entries.append((name, dt, shape, lambda n=name: src_bytes(n)))
        else:
            for e in range(n_exp):
                for j in (1, 2, 3):
                    for part in ('scale', 'weight'):
                        sname = '%s.ffn.experts.%d.w%d.%s' % (g, e % n_src, j, part)
                        if sname not in tensors:
                            continue
                        name = '%s.ffn.experts.%d.w%d.%s' % (g, e, j, part)
                        _, dt, shape, b, en = tensors[sname]
                        entries.append((name, dt, shape, lambda n=sname: src_bytes(n)))
        entries.sort(key=lambda x: x[0])
        header, off, sizes = {'__metadata__': {'format': 'pt'}}, 0, []
        esize = {'BF16': 2, 'F32': 4, 'F8_E8M0': 1, 'F8_E4M3': 1, 'I8': 1, 'I64': 8}
        for name, dt, shape, _ in entries:
            cnt = 1
            for s in shape:
                cnt *= s
            n = cnt * esize[dt]
            header[name] = {'dtype': dt, 'shape': shape, 'data_offsets': [off, off + n]}
            sizes.append(n)
            off += n
            weight_map[name] = files[g]
        total += off
        hb = json.dumps(header, separators=(',', ':')).encode()
        hb += b' ' * ((8 - len(hb) % 8) % 8)
        with open(os.path.join(dst, files[g]), 'wb') as f:
            f.write(struct.pack('<Q', len(hb)))
            f.write(hb)
            for (name, dt, shape, prod), n in zip(entries, sizes):
                data = prod()
                if len(data) != n:
                    raise SystemExit('size mismatch for %s' % name)
                f.write(data)
        print('wrote %s (%d tensors, %.2f GB)' % (files[g], len(entries), off / 1e9), flush=True)
    json.dump({'metadata': {'total_size': total}, 'weight_map': weight_map},
              open(os.path.join(dst, 'model.safetensors.index.json'), 'w'), indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
