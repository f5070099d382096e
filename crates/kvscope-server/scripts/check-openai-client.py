"""Drives a running kvscope server with the official `openai` Python client.

    pip install openai
    kvscope serve --port 8000 &            # or: cargo run -p kvscope-server --example demo -- 8000
    python3 crates/kvscope-server/scripts/check-openai-client.py http://127.0.0.1:8000/v1
"""
import sys

from openai import OpenAI

base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000/v1"
client = OpenAI(base_url=base, api_key="unused")
model = client.models.list().data[0].id

chat = client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "Say hello."}], max_tokens=16, temperature=0)
print("chat:", repr(chat.choices[0].message.content), chat.usage)

pieces, usage = [], None
for chunk in client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Say hello."}], max_tokens=16, temperature=0,
        stream=True, stream_options={"include_usage": True}):
    if chunk.choices and chunk.choices[0].delta.content:
        pieces.append(chunk.choices[0].delta.content)
    if chunk.usage:
        usage = chunk.usage
assert "".join(pieces) == chat.choices[0].message.content, "streamed and whole answers differ"
assert usage is not None and usage.completion_tokens == chat.usage.completion_tokens

comp = client.completions.create(model=model, prompt="The KV cache", max_tokens=8, temperature=0, logprobs=2, echo=True)
print("completion:", repr(comp.choices[0].text), comp.choices[0].logprobs.token_logprobs[-3:])

try:
    client.completions.create(model=model, prompt="x", max_tokens=-1)
    raise SystemExit("a negative max_tokens was accepted")
except Exception as e:  # openai.BadRequestError
    assert getattr(e, "status_code", None) == 400, e
    print("bad request:", e)
print("openai client OK")
