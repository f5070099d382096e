"""TTFT of a short request sent 1 s after N 3000-token prompts (issue 11).

Usage: python3 ttft-behind-long-prompt.py PORT [N]  (a `kvscope serve` on
127.0.0.1:PORT; N long prompts, default 1, each different so none hits the
prefix cache). Prints {"long0": {"ttft_s", "e2e_s"}, ..., "short": {...}}.
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
n_long = int(sys.argv[2]) if len(sys.argv) > 2 else 1
short_prompt = [200 + i for i in range(32)]
out = {}
threads = []
for j in range(n_long):
    long_prompt = [100 + (i * 7919 + j * 104729) % 40000 for i in range(3000)]
    body = {"prompt": long_prompt, "max_tokens": 8, "stream": True, "ignore_eos": True}
    threads.append(threading.Thread(target=stream, args=(body, out, f"long{j}")))
    threads[-1].start()
    time.sleep(0.05)
time.sleep(1.0)
stream({"prompt": short_prompt, "max_tokens": 8, "stream": True, "ignore_eos": True}, out, "short")
for t in threads:
    t.join()
print(json.dumps({k: {"ttft_s": round(v[0], 3), "e2e_s": round(v[1], 3)} for k, v in out.items()}))
