"""Main-thread latency probe: JSON-RPC coverage/show on a unixctl socket every 50 ms."""
import json, socket, sys, time, re
path, out = sys.argv[1], open(sys.argv[2], 'w')
i = 0
pat = re.compile(r'^(ofproto_recv_openflow|netdev_get_stats|bridge_reconfigure|netdev_received|ofproto_update_port|txn_success)\s.*total: (\d+)', re.M)
while True:
    i += 1
    t0 = time.time()
    try:
        s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(path)
        s.sendall(json.dumps({"method": "coverage/show", "params": [], "id": i}).encode())
        buf = b''
        while True:
            d = s.recv(65536)
            if not d: break
            buf += d
            try:
                r = json.loads(buf); break
            except ValueError:
                continue
        s.close()
        t1 = time.time()
        c = dict(pat.findall(r.get('result') or ''))
        out.write(f"{t0:.3f} {1000*(t1-t0):.1f} {json.dumps(c)}\n"); out.flush()
    except Exception as e:
        out.write(f"{t0:.3f} ERR {e}\n"); out.flush()
    time.sleep(0.05)
