#!/usr/bin/env python3
"""xcheck.py -- a second, independent implementation of the Bandit rules
(examples/bandit/data/README.md) in plain Python, plus a generator of
random captures unlike the sample: other tokens, decimals, fee tiers,
pools per pair, subscription id, faults and reorgs (removed blocks).

    xcheck.py SEED OUTDIR
    xcheck.py --capture FILE --pools FILE --tokens FILE OUTDIR

The first writes OUTDIR/capture.jsonl, pools.json, tokens.json and the
reference's expected_{events,skipped,signals}.jsonl and
expected_summary.json; the second decides a given capture (any bytes;
lines end at "\\n") and writes only the four expected_* files.
spec/services/bandit/e2e/crosscheck_spec.lua compares the Lua oracle against it,
xcheck_spec.lua the bundled sample's expected files. It encodes the same
decisions as docs/BANDIT.md where the README is silent.
Python 3.8+, standard library only.
"""
import json, random, sys, os
from fractions import Fraction as F

# ---------------- keccak (textbook) for addresses/EIP-55 ----------------
RC=[0x0000000000000001,0x0000000000008082,0x800000000000808A,0x8000000080008000,0x000000000000808B,0x0000000080000001,0x8000000080008081,0x8000000000008009,0x000000000000008A,0x0000000000000088,0x0000000080008009,0x000000008000000A,0x000000008000808B,0x800000000000008B,0x8000000000008089,0x8000000000008003,0x8000000000008002,0x8000000000000080,0x000000000000800A,0x800000008000000A,0x8000000080008081,0x8000000000008080,0x0000000080000001,0x8000000080008008]
ROT=[[0,36,3,41,18],[1,44,10,45,2],[62,6,43,15,61],[28,55,25,21,56],[27,20,39,8,14]]
M64=(1<<64)-1
def rot(v,n): return ((v<<n)|(v>>(64-n)))&M64 if n else v
def kf(A):
    for rc in RC:
        C=[A[x][0]^A[x][1]^A[x][2]^A[x][3]^A[x][4] for x in range(5)]
        D=[C[(x-1)%5]^rot(C[(x+1)%5],1) for x in range(5)]
        A=[[A[x][y]^D[x] for y in range(5)] for x in range(5)]
        B=[[0]*5 for _ in range(5)]
        for x in range(5):
            for y in range(5): B[y][(2*x+3*y)%5]=rot(A[x][y],ROT[x][y])
        A=[[B[x][y]^((~B[(x+1)%5][y])&B[(x+2)%5][y]) for y in range(5)] for x in range(5)]
        A[0][0]^=rc
    return A
def keccak256(m):
    m=bytearray(m); m+=b'\x01'
    while len(m)%136: m+=b'\x00'
    m[-1]|=0x80
    A=[[0]*5 for _ in range(5)]
    for o in range(0,len(m),136):
        for i in range(17): A[i%5][i//5]^=int.from_bytes(m[o+8*i:o+8*i+8],'little')
        A=kf(A)
    return b''.join(A[i%5][i//5].to_bytes(8,'little') for i in range(4))
def eip55(a):
    h=a.lower()[2:]; d=keccak256(h.encode()).hex()
    return '0x'+''.join(c.upper() if c.isalpha() and int(d[i],16)>=8 else c for i,c in enumerate(h))
def addr(label): return '0x'+keccak256(label.encode()).hex()[24:]
def hsh(label): return '0x'+keccak256(label.encode()).hex()

T_SYNC='0x1c411e9a96e071241c2f21f7726b17ae89e3cab4c78be50e062b03a9fffbbad1'
T_V2='0xd78ad95fa46c994b6551d0da85fc275fe613ce37657fb8d5e3d130840159d822'
T_V3='0xc42079f94a6350d7e6235f29174924f928cc2ac818eb64fed8004e115fbcca67'
T_TRANSFER='0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef'

# ---------------- formatting ----------------
def sig12(fr, digits=12):
    n, d = fr.numerator, fr.denominator
    e = len(str(n)) - len(str(d))
    while True:
        k = digits-1-e
        q = (n*10**k)//d if k>=0 else n//(d*10**(-k))
        if q >= 10**digits: e+=1
        elif q < 10**(digits-1): e-=1
        else: break
    k = digits-1-e
    num = n*10**k if k>=0 else n; den = d if k>=0 else d*10**(-k)
    q, r = divmod(num, den)
    if 2*r > den or (2*r == den and q%2): q+=1
    if q == 10**digits: q//=10; e+=1
    s = str(q)
    if e >= digits-1: return s+"0"*(e-digits+1)
    if e >= 0: return s[:e+1]+"."+s[e+1:]
    return "0."+"0"*(-e-1)+s
def fixed4(fr):
    n, d = fr.numerator, fr.denominator
    q, r = divmod(n*10**4, d)
    if 2*r > d or (2*r == d and q%2==1): q+=1
    neg = q < 0; q = abs(q)
    s = str(q).rjust(5, "0")
    return ("-" if neg else "")+s[:-4]+"."+s[-4:]
def jint(v): return v if v < 2**53 else str(v)

# ---------------- reference implementation ----------------
HEX='0123456789abcdefABCDEF'
def ishex(s, prefix=True):
    return isinstance(s,str) and s.startswith('0x') and all(c in HEX for c in s[2:])
def qty(s):
    if not ishex(s) or len(s) < 3: return None
    return int(s,16)
def h32(s):
    if not ishex(s) or len(s)!=66: return None
    return s.lower()

def _no_constant(name):
    raise ValueError('not RFC 8259: ' + name)
# As the engine's JSON decoder (cjson): RFC 8259 numbers only (no NaN,
# Infinity); raw control characters inside strings are accepted, but a NUL
# byte anywhere ends the text (malformed).
_decoder = json.JSONDecoder(strict=False, parse_constant=_no_constant)
def jloads(text):
    if '\x00' in text: raise ValueError('NUL byte')
    return _decoder.decode(text)

def reference(capture_lines, pools, tokens):
    toks = {t['address'].lower(): t for t in tokens}
    P = {}
    order = []
    for p in pools:
        a = p['address'].lower()
        t0, t1 = toks.get(p['token0'].lower()), toks.get(p['token1'].lower())
        P[a] = dict(p, key=a, addr=eip55(a), t0=eip55(p['token0']), t1=eip55(p['token1']),
                    sym0=t0['symbol'], sym1=t1['symbol'], dec0=t0['decimals'], dec1=t1['decimals'],
                    pair_key=(p['token0'].lower(), p['token1'].lower()))
        order.append(a)
    sub = None
    events, skipped, signals = [], [], []
    hist = {a: [] for a in order}   # accepted non-retracted state events
    accepted = []                   # all accepted events, for matching
    evals = 0
    def price_of(ev):
        p = P[ev['pool']]
        if ev['kind'] == 'v2_sync':
            r0, r1 = ev['r0'], ev['r1']
            if r0 == 0 or r1 == 0: return None
            return F(r1*10**p['dec0'], r0*10**p['dec1'])
        sp = ev['sp']
        if sp == 0: return None
        return F(sp*sp*10**p['dec0'], 2**192*10**p['dec1'])
    def cur(a):
        return hist[a][-1] if hist[a] else None
    def evaluate(a, line, trigger, ev):
        nonlocal evals
        evals += 1
        pk = P[a]['pair_key']
        venues = []
        for b in order:
            if P[b]['pair_key'] != pk: continue
            c = cur(b)
            if c is None: continue
            pr = price_of(c)
            if pr is None: continue
            venues.append((b, pr))
        best = None
        for (s, ps) in venues:
            for (b, pb) in venues:
                if s == b: continue
                fs, fb = F(P[s]['fee_ppm'], 10**6), F(P[b]['fee_ppm'], 10**6)
                net = ps*(1-fs)/(pb*(1+fb)) - 1
                key = (net, )
                if best is None or net > best[0] or (net == best[0] and (b, s) < (best[1], best[2])):
                    best = (net, b, s, pb, ps)
        if best and best[0] > 0:
            net, b, s, pb, ps = best
            pp = P[b]
            signals.append(dict(line=line, trigger=trigger, block=jint(ev['block']), logIndex=ev['li'],
                pair=pp['sym0']+'/'+pp['sym1'], token0=pp['t0'], token1=pp['t1'],
                buy_pool=P[b]['addr'], buy_dex=P[b]['dex'], buy_fee_ppm=P[b]['fee_ppm'], buy_price=sig12(pb),
                sell_pool=P[s]['addr'], sell_dex=P[s]['dex'], sell_fee_ppm=P[s]['fee_ppm'], sell_price=sig12(ps),
                gross_bps=fixed4((ps/pb-1)*10000), net_bps=fixed4(net*10000)))
    def s256(v): return v-2**256 if v >= 2**255 else v
    for n, text in enumerate(capture_lines, 1):
        if n == 1:
            try:
                m = jloads(text); sub = m.get('result') if isinstance(m, dict) and isinstance(m.get('result'), str) else None
            except Exception: sub = None
            continue
        def skip(reason, **kw):
            d = dict(line=n, reason=reason); d.update(kw); skipped.append(d)
        try:
            m = jloads(text)
        except Exception:
            skip('malformed_json'); continue
        if not (isinstance(m, dict) and m.get('method') == 'eth_subscription' and isinstance(m.get('params'), dict)
                and sub is not None and m['params'].get('subscription') == sub and isinstance(m['params'].get('result'), dict)):
            skip('foreign_message'); continue
        r = m['params']['result']
        if r.get('removed') is True:
            bh, th, li = h32(r.get('blockHash')), h32(r.get('transactionHash')), qty(r.get('logIndex'))
            match = None
            if bh and th and li is not None:
                for ev in reversed(accepted):
                    if not ev['retracted'] and ev['blockHash'] == bh and ev['txHash'] == th and ev['li'] == li:
                        match = ev; break
            if not match:
                skip('removed_unmatched'); continue
            match['retracted'] = True; match['by'] = n
            skip('retraction', retracts_line=match['line'])
            if match['kind'] != 'v2_swap':
                hist[match['pool']].remove(match)
                evaluate(match['pool'], n, 'retraction', match)
            continue
        topics = r.get('topics')
        # A 0X prefix is not hex (docs/BANDIT.md): only the digits' case is free.
        t0 = topics[0].lower() if isinstance(topics, list) and topics and isinstance(topics[0], str) and topics[0].startswith('0x') else None
        kind = {T_SYNC: 'v2_sync', T_V2: 'v2_swap', T_V3: 'v3_swap'}.get(t0)
        if not kind: skip('unknown_topic'); continue
        a = r.get('address')
        a = a.lower() if isinstance(a, str) and a.startswith('0x') else None
        if a not in P: skip('unknown_pool'); continue
        p = P[a]
        need_kind, ntop, nbytes = {'v2_sync': ('v2',1,64), 'v2_swap': ('v2',3,128), 'v3_swap': ('v3',3,160)}[kind]
        d = r.get('data')
        ok = p['kind'] == need_kind and len(topics) == ntop and ishex(d) and len(d) % 2 == 0 and (len(d)-2)//2 == nbytes
        words = []
        if ok:
            words = [int(d[2+64*i:66+64*i], 16) for i in range(nbytes//32)]
            for t in topics[1:]:
                if not (ishex(t) and len(t) == 66 and int(t, 16) < 2**160): ok = False
            if kind == 'v2_sync' and (words[0] >= 2**112 or words[1] >= 2**112): ok = False
            if kind == 'v3_swap':
                if words[2] >= 2**160 or words[3] >= 2**128: ok = False
                if not (-2**23 <= s256(words[4]) < 2**23): ok = False
        blk, txi, li = qty(r.get('blockNumber')), qty(r.get('transactionIndex')), qty(r.get('logIndex'))
        bh, th = h32(r.get('blockHash')), h32(r.get('transactionHash'))
        if not ok or None in (blk, txi, li, bh, th):
            skip('bad_data'); continue
        ev = dict(line=n, kind=kind, pool=a, block=blk, li=li, txi=txi, blockHash=bh, txHash=th, retracted=False)
        rec = dict(line=n, block=jint(blk), blockHash=bh, txHash=th, txIndex=txi, logIndex=li, pool=p['addr'],
                   dex=p['dex'], kind=kind, pair=p['sym0']+'/'+p['sym1'], token0=p['t0'], token1=p['t1'])
        if kind == 'v2_sync':
            ev['r0'], ev['r1'] = words
            rec.update(reserve0=str(words[0]), reserve1=str(words[1]))
        elif kind == 'v2_swap':
            rec.update(sender=eip55('0x'+topics[1][-40:]), to=eip55('0x'+topics[2][-40:]),
                       amount0In=str(words[0]), amount1In=str(words[1]), amount0Out=str(words[2]), amount1Out=str(words[3]))
        else:
            ev['sp'] = words[2]
            rec.update(sender=eip55('0x'+topics[1][-40:]), recipient=eip55('0x'+topics[2][-40:]),
                       amount0=str(s256(words[0])), amount1=str(s256(words[1])), sqrtPriceX96=str(words[2]),
                       liquidity=str(words[3]), tick=s256(words[4]))
        accepted.append(ev)
        ev['rec'] = rec
        if kind != 'v2_swap':
            hist[a].append(ev)
        c = cur(a)
        pr = price_of(c) if c else None
        ev['price'] = sig12(pr) if pr is not None else None
        events.append(ev)
        if kind != 'v2_swap':
            evaluate(a, n, 'event', ev)
    out_events = []
    for ev in events:
        rec = dict(ev['rec'])
        rec['retracted'] = ev['retracted']
        rec['price'] = ev['price']
        if ev['retracted']: rec['retracted_by_line'] = ev['by']
        out_events.append(rec)
    def counts(xs):
        c = {}
        for x in xs: c[x] = c.get(x, 0) + 1
        return dict(sorted(c.items()))
    fps = {}
    for a in order:
        p = P[a]; c = cur(a)
        st = dict(label=p['label'])
        pr = price_of(c) if c else None
        st['price'] = sig12(pr) if pr is not None else None
        if c is not None:
            if c['kind'] == 'v2_sync': st.update(reserve0=str(c['r0']), reserve1=str(c['r1']))
            else:
                rec = c['rec']; st.update(sqrtPriceX96=rec['sqrtPriceX96'], liquidity=rec['liquidity'], tick=rec['tick'])
        fps[p['addr']] = st
    summary = dict(lines=len(capture_lines), subscription_id=sub, events_accepted=len(events),
        events_by_kind=counts(e['kind'] for e in events), events_retracted=sum(1 for e in events if e['retracted']),
        skipped=len(skipped), skipped_by_reason=counts(s['reason'] for s in skipped), evaluations=evals,
        signals=len(signals), signals_by_pair=counts(s['pair'] for s in signals),
        signals_by_trigger=counts(s['trigger'] for s in signals), final_pool_state=fps)
    return out_events, skipped, signals, summary

# ---------------- generator ----------------
from math import isqrt

def generate(seed):
    R = random.Random(seed)
    syms = [('TKA',18),('TKB',6),('TKC',8),('TKD',18),('TKE',6)]
    tokens = [dict(symbol=s, address=eip55(addr('tok:%d:%s' % (seed, s))), decimals=d, name=s) for s, d in syms]
    pools = []
    pairs = []
    for i in range(4):
        a, b = R.sample(tokens, 2)
        if a['address'].lower() > b['address'].lower(): a, b = b, a
        pairs.append((a, b, 10**R.uniform(-3, 4)))
        for j in range(R.randint(2, 4)):
            kind = R.choice(['v2', 'v2', 'v3'])
            fee = 3000 if kind == 'v2' else R.choice([100, 500, 3000])
            dex = R.choice(['quickswap', 'sushiswap']) if kind == 'v2' else 'uniswap_v3'
            lab = '%s %s/%s #%d.%d' % (dex, a['symbol'], b['symbol'], i, j)
            pools.append(dict(address=eip55(addr('pool:%d:%s' % (seed, lab))), dex=dex, kind=kind,
                              token0=a['address'], token1=b['address'], token0_symbol=a['symbol'],
                              token1_symbol=b['symbol'], fee_ppm=fee, label=lab, pair=i))
    sub = '0x' + ('%x' % R.getrandbits(R.randint(60, 128)))
    lines = [json.dumps(dict(jsonrpc='2.0', id=1, result=sub), separators=(',', ':'))]
    block = 40000000 + R.randint(0, 10**6)
    def log(p, topics, data, blk, bh, tx, txi, li, removed=False, subid=None):
        return json.dumps(dict(jsonrpc='2.0', method='eth_subscription', params=dict(
            subscription=subid or sub, result=dict(address=p.lower() if isinstance(p, str) else p, topics=topics, data=data,
            blockNumber=hex(blk), transactionHash=tx, transactionIndex=hex(txi), blockHash=bh,
            logIndex=hex(li), removed=removed))), separators=(',', ':'))
    def w(v): return '%064x' % (v % 2**256)
    def tad(a): return '0x' + '0'*24 + a.lower()[2:]
    prices = {}
    blocks = []   # list of (blk, bh, [log lines])
    for bi in range(R.randint(40, 70)):
        blk = block + bi
        bh = hsh('blk:%d:%d:%d' % (seed, blk, R.getrandbits(32)))
        logs = []
        li = 0
        for k in range(R.randint(1, 6)):
            p = R.choice(pools)
            a, b, base = pairs[p['pair']]
            px = base * (1 + R.uniform(-1, 1) * R.choice([0.012, 0.003, 0.0008]))
            tx = hsh('tx:%d:%d:%d:%d' % (seed, blk, k, R.getrandbits(32)))
            txi = R.randint(0, 200)
            d0, d1 = a['decimals'], b['decimals']
            if p['kind'] == 'v2':
                r0 = R.randint(10**(d0+2), 10**(d0+6))
                r1 = int(F(r0) * F(px) * 10**d1 / 10**d0)
                if R.random() < 0.03: r0, r1 = 0, 0
                if R.random() < 0.02: r0 = 2**112 - 1
                logs.append(log(p['address'], [T_SYNC], '0x'+w(r0)+w(r1), blk, bh, tx, txi, li)); li += 1
                logs.append(log(p['address'], [T_V2, tad(addr('r%d' % R.randint(0, 5))), tad(addr('e%d' % R.randint(0, 50)))],
                    '0x'+w(R.randint(0, 10**20))+w(0)+w(0)+w(R.randint(0, 10**20)), blk, bh, tx, txi, li)); li += 1
            else:
                raw = F(px) * 10**d1 / 10**d0
                sp = isqrt(int(raw * 2**192))
                if R.random() < 0.02: sp = 0
                tick = R.randint(-887272, 887272)
                logs.append(log(p['address'], [T_V3, tad(addr('r%d' % R.randint(0, 5))), tad(addr('e%d' % R.randint(0, 50)))],
                    '0x'+w(-R.randint(1, 10**22))+w(R.randint(1, 10**22))+w(sp)+w(R.randint(0, 2**128-1))+w(tick),
                    blk, bh, tx, txi, li)); li += 1
        blocks.append((blk, bh, logs))
        lines.extend(logs)
        # faults
        if R.random() < 0.5:
            f = R.randint(0, 12)
            base = R.choice(logs)
            m = json.loads(base)
            r = m['params']['result']
            if f == 0: lines.append(base[:R.randint(1, len(base)-1)])
            elif f == 1: lines.append(base.replace(sub, '0xdead'))
            elif f == 2: lines.append(json.dumps(dict(jsonrpc='2.0', id=R.randint(2, 9), result=True)))
            elif f == 3:
                r['topics'] = [T_TRANSFER] + r['topics'][1:]; lines.append(json.dumps(m, separators=(',', ':')))
            elif f == 4:
                r['address'] = addr('nope%d' % R.randint(0, 9)); lines.append(json.dumps(m, separators=(',', ':')))
            elif f == 5:
                r['data'] = r['data'][:-1]; lines.append(json.dumps(m, separators=(',', ':')))
            elif f == 6:
                r['data'] = r['data'][:-64]; lines.append(json.dumps(m, separators=(',', ':')))
            elif f == 7:
                r['topics'] = r['topics'][:1] + r['topics']; lines.append(json.dumps(m, separators=(',', ':')))
            elif f == 8:  # wrong pool kind: swap topic family
                t = r['topics'][0]
                r['topics'][0] = T_V3 if t == T_V2 else (T_V2 if t == T_V3 else T_V3)
                lines.append(json.dumps(m, separators=(',', ':')))
            elif f == 9:
                r['removed'] = True; r['logIndex'] = hex(999); lines.append(json.dumps(m, separators=(',', ':')))
            elif f == 10:
                r['data'] = r['data'][:10] + 'zz' + r['data'][12:]; lines.append(json.dumps(m, separators=(',', ':')))
            elif f == 11:
                lines.append(json.dumps(m))   # spaces: same log again, other layout (a duplicate)
            else:
                lines.append('')
        # reorg: drop the last 1-2 blocks
        if R.random() < 0.12 and len(blocks) >= 3:
            k = R.randint(1, 2)
            for (b_, bh_, logs_) in blocks[-k:]:
                for l in logs_:
                    lines.append(l.replace('"removed":false', '"removed":true'))
            del blocks[-k:]
    return lines, pools, tokens

def read_capture(path):
    """The lines of a capture file as the engine's feeder reads them."""
    with open(path, 'rb') as f: data = f.read()
    raw = data.split(b'\n')
    if raw and raw[-1] == b'': raw.pop()
    # Bytes that are not UTF-8 stay in the text as lone surrogates: the
    # line is still parsed, and no field holding one is valid.
    return [b.decode('utf-8', 'surrogateescape') for b in raw]

def write_expected(out, lines, pools, tokens):
    ev, sk, sg, sm = reference(lines, pools, tokens)
    def jl(name, xs):
        with open(out+'/expected_'+name, 'w') as f:
            for x in xs: f.write(json.dumps(x, separators=(',', ':')) + '\n')
    jl('events.jsonl', ev); jl('skipped.jsonl', sk); jl('signals.jsonl', sg)
    with open(out+'/expected_summary.json', 'w') as f: f.write(json.dumps(sm, indent=2) + '\n')
    return ev, sk, sg, sm

USAGE = 'usage: xcheck.py SEED OUTDIR | xcheck.py --capture FILE --pools FILE --tokens FILE OUTDIR'

def main(argv):
    if argv and argv[0].startswith('--'):
        opts, rest = {}, []
        i = 0
        while i < len(argv):
            if argv[i] in ('--capture', '--pools', '--tokens') and i + 1 < len(argv):
                opts[argv[i][2:]] = argv[i+1]; i += 2
            elif argv[i].startswith('--'):
                sys.exit('xcheck.py: unknown option %s\n%s' % (argv[i], USAGE))
            else:
                rest.append(argv[i]); i += 1
        if len(opts) != 3 or len(rest) != 1: sys.exit(USAGE)
        out = rest[0]
        os.makedirs(out, exist_ok=True)
        with open(opts['pools']) as f: pools = json.load(f)
        with open(opts['tokens']) as f: tokens = json.load(f)
        lines = read_capture(opts['capture'])
        ev, sk, sg, sm = write_expected(out, lines, pools, tokens)
        print(opts['capture'], 'lines', len(lines), 'events', len(ev), 'skipped', len(sk), 'signals', len(sg), 'evals', sm['evaluations'])
        return
    if len(argv) != 2 or not argv[0].isdigit(): sys.exit(USAGE)
    seed, out = int(argv[0]), argv[1]
    os.makedirs(out, exist_ok=True)
    lines, pools, tokens = generate(seed)
    for p in pools: del p['pair']
    with open(out+'/capture.jsonl', 'w') as f: f.write('\n'.join(lines) + '\n')
    with open(out+'/pools.json', 'w') as f: json.dump(pools, f, indent=2)
    with open(out+'/tokens.json', 'w') as f: json.dump(tokens, f, indent=2)
    ev, sk, sg, sm = write_expected(out, lines, pools, tokens)
    print(seed, 'lines', len(lines), 'events', len(ev), 'skipped', len(sk), 'signals', len(sg), 'evals', sm['evaluations'])

if __name__ == '__main__':
    main(sys.argv[1:])
