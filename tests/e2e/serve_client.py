"""The client side of tests/e2e/serve.sh: talks to a running `hp serve` over loopback with the
standard library only, and checks each endpoint against what it must answer (hp generate's text
for greedy and seeded requests). Every wait has a timeout.
usage: serve_client.py HP MODEL_CONFIG PORT"""
import http.client
import json
import re
import socket
import subprocess
import sys
import threading
import time

HP, MODEL, PORT = sys.argv[1], sys.argv[2], int(sys.argv[3])
NAME = MODEL  # the served model's name is its --model value
TIMEOUT = 60


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def request(method, path, body=None, raw=None):
    """(status, parsed JSON or text) of one request on its own connection."""
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=TIMEOUT)
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    c.request(method, path, body=data, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    text = r.read().decode()
    c.close()
    if r.getheader("Content-Type", "").startswith("application/json"):
        return r.status, json.loads(text)
    return r.status, text


def stream(path, body):
    """The parsed data events of a streamed request, and whether it ended with [DONE]."""
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=TIMEOUT)
    c.request("POST", path, body=json.dumps(dict(body, stream=True)),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        fail(f"stream {path}: status {r.status}: {r.read()!r}")
    check(r.getheader("Content-Type", "").startswith("text/event-stream"),
          f"stream content type {r.getheader('Content-Type')}")
    events, done = [], False
    for line in r.read().decode().split("\n"):
        if not line.startswith("data: "):
            continue
        payload = line[len("data: "):]
        if payload == "[DONE]":
            done = True
            continue
        check(not done, "data after [DONE]")
        events.append(json.loads(payload))
    c.close()
    return events, done


def generate(prompt, tokens, *extra):
    """hp generate's record for the same model, prompt and settings."""
    out = subprocess.run([HP, "generate", "--model", MODEL, "--prompt", prompt, "--tokens",
                          str(tokens), "--threads", "1", "--json", *extra],
                         capture_output=True, text=True, timeout=TIMEOUT)
    check(out.returncode == 0, f"hp generate failed: {out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def metrics(settled=False):
    """/metrics as a dict; settled: once no request is in flight (the counters then hold every
    request answered)."""
    deadline = time.time() + TIMEOUT
    while True:
        status, text = request("GET", "/metrics")
        check(status == 200, f"/metrics: {status}")
        m = {m.group(1): float(m.group(2))
             for m in re.finditer(r"^(hp_[a-z_]+(?:\{[^}]*\})?) (\S+)$", text, re.M)}
        if not settled or m["hp_in_flight_requests"] == 0 or time.time() > deadline:
            return m
        time.sleep(0.05)


def expect_error(status, body, want_status, param=None, what=""):
    check(status == want_status, f"{what}: status {status}, expected {want_status}: {body}")
    check(isinstance(body, dict) and "error" in body, f"{what}: no error body: {body}")
    e = body["error"]
    check(set(e) >= {"message", "type", "param", "code"}, f"{what}: error fields {e}")
    check(e["type"] == ("invalid_request_error" if want_status < 500 and want_status != 429
                        else e["type"]), f"{what}: type {e['type']}")
    if param is not None:
        check(e["param"] == param, f"{what}: param {e['param']}, expected {param}")


# ---- endpoints -----------------------------------------------------------------------------
status, body = request("GET", "/health")
check(status == 200 and body == {"status": "ok"}, f"/health: {status} {body}")
status, body = request("GET", "/v1/models")
check(status == 200 and body["object"] == "list" and body["data"][0]["id"] == NAME,
      f"/v1/models: {status} {body}")
max_len = body["data"][0]["max_model_len"]
check(max_len == 1024, f"max_model_len {max_len}")

# Greedy completion: hp generate's text, OpenAI's fields.
PROMPT = "And God said"
gen = generate(PROMPT, 24, "--temperature", "0")
greedy = {"model": NAME, "prompt": PROMPT, "max_tokens": 24, "temperature": 0}
status, body = request("POST", "/v1/completions", greedy)
check(status == 200, f"completion: {status} {body}")
check(body["object"] == "text_completion" and body["id"].startswith("cmpl-"), f"fields: {body}")
check(body["model"] == NAME and isinstance(body["created"], int), f"fields: {body}")
choice = body["choices"][0]
check(choice["index"] == 0 and choice["finish_reason"] == "length", f"choice: {choice}")
check(choice["text"] == gen["text"], f"greedy text {choice['text']!r} != hp generate's "
      f"{gen['text']!r}")
check(len(set(gen["tokens"])) > 2, f"greedy output too uniform to compare: {gen['tokens']}")
check(body["usage"] == {"prompt_tokens": 12, "completion_tokens": 24, "total_tokens": 36},
      f"usage: {body['usage']}")

# The same prompt as token ids.
status, ids_body = request("POST", "/v1/completions",
                           dict(greedy, prompt=[ord(c) for c in PROMPT]))
check(status == 200 and ids_body["choices"][0]["text"] == gen["text"],
      f"token-id prompt: {status} {ids_body}")

status, one_body = request("POST", "/v1/completions", dict(greedy, prompt=[PROMPT]))
check(status == 200 and one_body["choices"][0]["text"] == gen["text"],
      f"a one-string array prompt: {status} {one_body}")
expect_error(*request("POST", "/v1/completions", dict(greedy, prompt=["a", "b"])), 400, "prompt",
             "two prompts")

# Streamed: the chunks add up to the same text, the last says why it ended, usage if asked.
events, done = stream("/v1/completions", dict(greedy, stream_options={"include_usage": True}))
check(done, "stream did not end with [DONE]")
check(len(events) >= 3, f"only {len(events)} events: not streamed")
text = "".join(e["choices"][0]["text"] for e in events if e["choices"])
check(text == gen["text"], f"streamed text {text!r} != {gen['text']!r}")
finishes = [e["choices"][0]["finish_reason"] for e in events if e["choices"]]
check(finishes[-1] == "length" and all(f is None for f in finishes[:-1]),
      f"finish reasons {finishes}")
check(events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == 24,
      f"usage chunk: {events[-1]}")
check(all(e["object"] == "text_completion" for e in events), "stream object")

# Seeded sampling: a seed gives what hp generate gives with it (top_k 0 and top_p 1 are the
# server's defaults).
seeded = generate(PROMPT, 16, "--temperature", "1", "--top-k", "0", "--seed", "7")
status, body = request("POST", "/v1/completions",
                       {"prompt": PROMPT, "max_tokens": 16, "temperature": 1, "seed": 7})
check(status == 200 and body["choices"][0]["text"] == seeded["text"],
      f"seeded: {body} vs {seeded['text']!r}")

# A stop string taken from the seeded output: the text ends before it, finish "stop", streamed
# or not.
toks = seeded["tokens"]
at = next((i for i in range(2, len(toks) - 1) if 32 <= toks[i] < 127 and 32 <= toks[i + 1] < 127
           and chr(toks[i]) + chr(toks[i + 1]) not in "".join(map(chr, toks[:i + 1]))), None)
if at is not None:
    stop = chr(toks[at]) + chr(toks[at + 1])
    req = {"prompt": PROMPT, "max_tokens": 16, "temperature": 1, "seed": 7, "stop": [stop]}
    status, body = request("POST", "/v1/completions", req)
    ch = body["choices"][0]
    check(status == 200 and ch["finish_reason"] == "stop" and stop not in ch["text"] and
          seeded["text"].startswith(ch["text"]), f"stop {stop!r}: {body}")
    events, done = stream("/v1/completions", dict(req, stop=stop))
    check("".join(e["choices"][0]["text"] for e in events) == ch["text"],
          f"streamed stop differs: {events}")
else:
    print("serve: no printable pair in the seeded output; stop string not checked")

# Chat: the template's prompt through hp generate gives the same reply.
messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
chat_prompt = "<|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\n"
chat_gen = generate(chat_prompt, 20, "--temperature", "0", "--stop", "\n<|")
status, body = request("POST", "/v1/chat/completions",
                       {"model": NAME, "messages": messages, "max_tokens": 20, "temperature": 0})
check(status == 200 and body["object"] == "chat.completion" and
      body["id"].startswith("chatcmpl-"), f"chat: {status} {body}")
msg = body["choices"][0]["message"]
check(msg["role"] == "assistant" and msg["content"] == chat_gen["text"],
      f"chat reply {msg} != {chat_gen['text']!r}")
check(body["usage"]["prompt_tokens"] == len(chat_prompt), f"chat usage {body['usage']}")
events, done = stream("/v1/chat/completions",
                      {"messages": messages, "max_tokens": 20, "temperature": 0})
check(done and events[0]["choices"][0]["delta"].get("role") == "assistant", f"chat: {events}")
check(all(e["object"] == "chat.completion.chunk" for e in events), "chat chunk object")
content = "".join(e["choices"][0]["delta"].get("content", "") for e in events)
check(content == chat_gen["text"], f"streamed chat {content!r} != {chat_gen['text']!r}")

# ---- bad requests: 4xx with an OpenAI error body, never a crash ------------------------------
expect_error(*request("POST", "/v1/completions", raw="{\"prompt\": "), 400, what="bad JSON")
expect_error(*request("POST", "/v1/completions", raw="[1, 2]"), 400, what="not an object")
expect_error(*request("POST", "/v1/completions", {"prompt": PROMPT, "max_tokens": "ten"}), 400,
             "max_tokens", "wrong type")
expect_error(*request("POST", "/v1/completions", {"prompt": 5}), 400, "prompt", "prompt type")
expect_error(*request("POST", "/v1/completions", {"prompt": PROMPT, "temperature": -1}), 400,
             "temperature", "range")
expect_error(*request("POST", "/v1/completions", {"prompt": PROMPT, "n": 2}), 400, "n", "n=2")
expect_error(*request("POST", "/v1/completions", {"prompt": [1, 999]}), 400, "prompt",
             "token id")
expect_error(*request("POST", "/v1/completions", {}), 400, "prompt", "no prompt")
expect_error(*request("POST", "/v1/chat/completions", {"messages": [{"role": "user"}]}), 400,
             "messages.content", "no content")
expect_error(*request("POST", "/v1/completions", {"prompt": "x" * 1025}), 400, "prompt",
             "oversized prompt")
status, body = request("POST", "/v1/completions", {"prompt": "x" * 1000, "max_tokens": 100})
expect_error(status, body, 400, "max_tokens", "prompt + max_tokens")
check(body["error"]["code"] == "context_length_exceeded", f"code: {body}")
expect_error(*request("POST", "/v1/completions", {"model": "gpt-4", "prompt": "x"}), 404,
             "model", "another model")
expect_error(*request("GET", "/v1/nothing"), 404, what="unknown route")
expect_error(*request("POST", "/v1/models", {}), 404, what="wrong method")
status, _ = request("GET", "/health")
check(status == 200, "the server is unwell after bad requests")

# ---- concurrent streaming clients --------------------------------------------------------------
# Four at once (two running, two queued: --max-batch 2 --max-queue 2), each must get what it
# gets alone (seeded sampling: the draws depend on the seed and the token's index only).
prompts = ["In the beginning", "Let there be light", "And the earth", "Z"]
def conc_req(p):
    return {"prompt": p, "max_tokens": 40, "temperature": 1, "seed": len(p)}
alone = {}
for p in prompts:
    s, b = request("POST", "/v1/completions", conc_req(p))
    check(s == 200, f"alone {p}: {s} {b}")
    alone[p] = b["choices"][0]["text"]
before = metrics(settled=True)
results, errors = {}, []


def client(p):
    try:
        ev, ok = stream("/v1/completions", conc_req(p))
        results[p] = ("".join(e["choices"][0]["text"] for e in ev), ok)
    except BaseException as e:  # noqa: B036 - reported below
        errors.append(f"{p}: {e!r}")


threads = [threading.Thread(target=client, args=(p,)) for p in prompts]
t0 = time.time()
for t in threads:
    t.start()
for t in threads:
    t.join(TIMEOUT)
check(not any(t.is_alive() for t in threads), "concurrent clients did not finish in time")
check(not errors, f"concurrent clients failed: {errors}")
for p in prompts:
    check(results[p] == (alone[p], True), f"concurrent {p!r}: {results[p]} vs {alone[p]!r}")
after = metrics(settled=True)
check(after["hp_generated_tokens_total"] - before["hp_generated_tokens_total"] == 160,
      f"generated tokens {before['hp_generated_tokens_total']} -> "
      f"{after['hp_generated_tokens_total']}")
print(f"serve: 4 concurrent streams of 40 tokens in {time.time() - t0:.2f} s")

# ---- a full queue answers 429; clients that go away free their blocks ----------------------
long_req = json.dumps({"prompt": "And", "max_tokens": 1000, "temperature": 0, "stream": True})
socks = []
for _ in range(4):  # fills the two places and the queue
    s = socket.create_connection(("127.0.0.1", PORT), timeout=TIMEOUT)
    s.sendall(("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(long_req)}\r\n\r\n{long_req}").encode())
    head = s.recv(4096).decode(errors="replace")
    check(head.startswith("HTTP/1.1 200"), f"long stream: {head[:200]}")
    socks.append(s)
status, body = request("POST", "/v1/completions", {"prompt": "x", "max_tokens": 2})
expect_error(status, body, 429, what="a full queue")
check(body["error"]["type"] == "rate_limit_error", f"429 type: {body}")
m = metrics()
check(m["hp_in_flight_requests"] == 4, f"in flight while full: {m}")
for s in socks:  # gone mid-stream
    s.close()
deadline = time.time() + 20
while time.time() < deadline:
    m = metrics()
    if m["hp_in_flight_requests"] == 0 and m["hp_kv_free_blocks"] == m["hp_kv_blocks"]:
        break
    time.sleep(0.1)
check(m["hp_in_flight_requests"] == 0 and m["hp_running_requests"] == 0,
      f"cancelled requests still in flight after 20 s: {m}")
check(m["hp_kv_free_blocks"] == m["hp_kv_blocks"], f"KV blocks leaked: {m}")
ran = m["hp_generated_tokens_total"] - after["hp_generated_tokens_total"]
check(ran < 2000, f"the disconnected requests ran to the end ({ran} tokens)")
print(f"serve: 4 clients gone mid-stream: cancelled after {ran:.0f} of 4000 tokens, "
      f"{m['hp_kv_free_blocks']:.0f} of {m['hp_kv_blocks']:.0f} KV blocks free")
status, body = request("POST", "/v1/completions", greedy)
check(status == 200 and body["choices"][0]["text"] == gen["text"],
      f"after the disconnects: {status} {body}")

# ---- metrics ---------------------------------------------------------------------------------
status, text = request("GET", "/metrics")
for name in ["hp_queue_requests", "hp_running_requests", "hp_preemptions_total",
             "hp_tokens_per_second", "hp_generated_tokens_total"]:
    check(f"\n{name} " in text and f"# TYPE {name} " in text, f"/metrics lacks {name}")
check('hp_responses_total{status="429"} 1' in text, "the 429 is not counted")
print("serve client: ok")
