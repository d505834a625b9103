import json, re, sys, datetime
bench, probe, links = sys.argv[1], sys.argv[2], sys.argv[3]
d = json.load(open(bench))
def hms(t): return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime('%H:%M:%S.%f')[:-3]
stalls = []
prev = None
samples = []
for line in open(probe):
    p = line.split(' ', 2)
    if p[1] == 'ERR': continue
    t0, lat = float(p[0]), float(p[1]); c = json.loads(p[2])
    samples.append((t0, lat, c))
for i in range(1, len(samples) - 1):
    t0, lat, c = samples[i]
    if lat > 150:
        p, n = samples[i-1][2], samples[i+1][2]
        stalls.append((t0, t0 + lat/1000, lat, {k: int(n[k]) - int(p[k]) for k in n if k in p and int(n[k]) != int(p[k])}))
lk = []
for line in open(links):
    m = re.match(r'\[?(\d{4}-\d\d-\d\dT[\d:.]+)\]?\s+(.*)', line.strip())
    if m:
        t = datetime.datetime.fromisoformat(m.group(1)[:26]).replace(tzinfo=datetime.timezone.utc).timestamp()
        lk.append((t, m.group(2)[:110]))
for r in [x for x in d['runs'] if x['strategy'] != 'floor']:
    ev = r['extra'].get('evidence', '')
    m = re.search(r'ovn-installed-ts=(\d+).*?event seen ([\d.]+) ms after', ev)
    tl = {e['event']: e['t_ms'] for e in r['timeline']}
    t0 = int(m.group(1))/1000 + float(m.group(2))/1000 - tl['port-ready.ovn-installed']/1000
    print(f"== run {r['run_index']} blackout {r['blackout_ms']} lost {r['probes_lost']} (t0 {hms(t0)})")
    rows = []
    for e in r['timeline']:
        if e['event'] in ('guest.stop','switchover','activation.requested','bound','cleanup.done','ready'):
            rows.append((t0 + e['t_ms']/1000, 'EVENT ' + e['event']))
    for a, b, n in r['extra']['loss_runs']:
        rows.append((t0 + a/1000, f'LOSS  {a:.0f}-{b:.0f} ms ({b-a:.0f} ms, {n} probes) until {hms(t0+b/1000)}'))
    lo, hi = t0 + tl['switchover']/1000 - 1.5, t0 + tl.get('cleanup.done', tl['switchover'] + 3000)/1000 + 2.5
    for a, b, lat, c in stalls:
        if lo <= a <= hi: rows.append((a, f'STALL vswitchd(hv2) main thread {lat:.0f} ms until {hms(b)} {c}'))
    for t, s in lk:
        if lo <= t <= hi: rows.append((t, 'LINK  ' + re.sub(r'\\s+',' ',s)))
    for t, s in sorted(rows):
        print(f'{hms(t)} {1000*t - 1000*t0:9.0f} {s}')
