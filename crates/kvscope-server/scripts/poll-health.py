"""Polls /health every 20 ms on one keep-alive connection until STOP_FILE
exists, then prints the latency percentiles (issue 11).

Usage: python3 poll-health.py PORT STOP_FILE
"""
import http.client, time, sys, os, json
port = int(sys.argv[1]); stop = sys.argv[2]
lat = []
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
while not os.path.exists(stop):
    t0 = time.perf_counter()
    try:
        c.request("GET", "/health"); r = c.getresponse(); r.read()
        assert r.status == 200
    except Exception as e:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30); continue
    lat.append((time.perf_counter() - t0) * 1000)
    time.sleep(0.02)
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
print(json.dumps({"n": len(lat), "p50_ms": round(q(0.5), 2), "p99_ms": round(q(0.99), 2), "max_ms": round(lat[-1], 2)}))
