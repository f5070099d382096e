"""TTFT of a short request sent 1 s after a 3000-token prompt (issue 11).

Usage: python3 ttft-behind-long-prompt.py PORT  (a `kvscope serve` on 127.0.0.1:PORT)
Prints {"long": {"ttft_s", "e2e_s"}, "short": {...}}.
"""
import http.client, json, time, sys, threading
port = int(sys.argv[1])
def stream(body, out, key):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.time()
    c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    first = None
    while True:
        line = r.readline()
        if not line: break
        if line.startswith(b"data: ") and b'"text"' in line and first is None:
            first = time.time() - t0
    out[key] = (first, time.time() - t0)
long_prompt = [100 + (i * 7919) % 40000 for i in range(3000)]
short_prompt = [200 + i for i in range(32)]
out = {}
t = threading.Thread(target=stream, args=({"prompt": long_prompt, "max_tokens": 8, "stream": True, "ignore_eos": True}, out, "long"))
t.start()
time.sleep(1.0)
stream({"prompt": short_prompt, "max_tokens": 8, "stream": True, "ignore_eos": True}, out, "short")
t.join()
print(json.dumps({k: {"ttft_s": round(v[0], 3), "e2e_s": round(v[1], 3)} for k, v in out.items()}))
