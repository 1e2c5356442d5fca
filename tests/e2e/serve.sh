# hp serve over loopback (the client checks are tests/e2e/serve_client.py): every endpoint,
# greedy and seeded text equal to hp generate's, streaming, chat, bad requests answered 4xx with
# an OpenAI error body, concurrent streams, a full queue (429), clients gone mid-stream (their
# blocks back, the next request served), a request timeout (504), a request longer than the
# resident blocks of a --device-memory plan (the text of hp generate without a budget), and
# SIGTERM and SIGINT stopping the server (503 to a stream in flight, exit 0).
source "$(dirname "$0")/lib.sh"
# llama-kjv's shape with 1024 positions: small and fast, with room for long requests (and its
# random weights, unlike GPT-2's, do not decode greedily to one repeated byte).
cat > "$WORK/long.json" <<'JSON'
{"model_type": "llama", "num_hidden_layers": 4, "hidden_size": 256, "intermediate_size": 688,
 "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 1024,
 "vocab_size": 256, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": false}
JSON

# Eight layers of 512: a 1000-token request takes seconds on any machine (about 100 MB of
# weights read per token), so that it is sure to outlast a 1 s timeout.
cat > "$WORK/slow.json" <<'JSON'
{"model_type": "llama", "num_hidden_layers": 8, "hidden_size": 512, "intermediate_size": 1376,
 "num_attention_heads": 8, "num_key_value_heads": 2, "max_position_embeddings": 1024,
 "vocab_size": 256, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": false}
JSON

# start_server OUT CONFIG ARGS...: starts hp serve --port 0 in the background (pid in $pid) and
# reads the bound port from its first line (in $port), within 60 s.
start_server() {
  local out=$1 model=$2 i
  shift 2
  "$HP" serve --model "$model" --port 0 --threads 1 "$@" > "$out" 2> "$out.err" &
  pid=$!
  for ((i = 0; i < 600; i++)); do
    port=$(grep -oE 'listening on http://127\.0\.0\.1:[0-9]+' "$out" | grep -oE '[0-9]+$' || true)
    [[ -n $port ]] && return 0
    kill -0 "$pid" 2>/dev/null || fail "hp serve exited: $(cat "$out.err")"
    sleep 0.1
  done
  fail "hp serve printed no address in 60 s: $(cat "$out" "$out.err")"
}
# stop_server SIG: sends SIG and expects exit 0 within 20 s; with no SIG, only waits.
stop_server() {
  local i rc=0
  [[ -n ${1:-} ]] && kill "-$1" "$pid"
  for ((i = 0; i < 200; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && { kill -9 "$pid"; fail "SIG${1:-TERM}: hp serve still running after 20 s"; }
  wait "$pid" || rc=$?
  ((rc == 0)) || fail "SIG${1:-TERM}: hp serve exited $rc: $(cat "$WORK"/*.err)"
}

start_server "$WORK/main.out" "$WORK/long.json" --max-batch 2 --max-queue 2
timeout 300 python3 "$ROOT/tests/e2e/serve_client.py" "$HP" "$WORK/long.json" "$port" ||
  { kill -9 "$pid" 2>/dev/null; fail "the client checks failed (server log: $(cat "$WORK/main.out.err"))"; }
stop_server TERM

# Under --device-memory the KV plan places the pool: a request longer than its resident blocks
# (offloaded blocks fetched per layer) completes with the text hp generate gives without a budget.
start_server "$WORK/budget.out" "$WORK/long.json" --max-batch 2 --device-memory 80% \
  --kv-offload host
grep -q "kv plan: fetch" "$WORK/budget.out.err" || fail "no offload plan: $(cat "$WORK/budget.out.err")"
prompt=$(python3 -c 'print("And God said, Let there be light. " * 16, end="")')  # 528 positions
expected=$("$HP" generate --model "$WORK/long.json" --threads 1 --prompt "$prompt" --tokens 24 \
  --temperature 0 --json | python3 -c 'import json, sys; print(json.dumps(json.loads(sys.stdin.readline())["text"]))') ||
  fail "hp generate for the budget check"
got=$(python3 - "$port" "$prompt" <<'PY'
import http.client, json, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=120)
c.request("POST", "/v1/completions",
          body=json.dumps({"prompt": sys.argv[2], "max_tokens": 24, "temperature": 0}))
r = c.getresponse()
body = json.loads(r.read())
assert r.status == 200, (r.status, body)
print(json.dumps(body["choices"][0]["text"]))
PY
) || { kill -9 "$pid" 2>/dev/null; fail "the request under a budget failed"; }
[[ $got == "$expected" ]] || { kill -9 "$pid" 2>/dev/null; fail "text under a budget: $got, not $expected"; }
host_blocks=$(python3 -c 'import sys, urllib.request
print(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=30).read().decode())' "$port" |
  awk '$1 == "hp_kv_host_blocks" { print $2 }')
((host_blocks > 0)) || { kill -9 "$pid" 2>/dev/null; fail "no offloaded KV blocks: '$host_blocks'"; }
stop_server TERM

# A request past --request-timeout: 504, and the server goes on; then SIGINT stops it.
start_server "$WORK/second.out" "$WORK/slow.json" --request-timeout 1
python3 - "$port" <<'PY' || { kill -9 "$pid" 2>/dev/null; fail "timeout / shutdown checks failed"; }
import http.client, json, sys
port = int(sys.argv[1])
def post(body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("POST", "/v1/completions", body=json.dumps(body))
    return c, c.getresponse()
c, r = post({"prompt": "And", "max_tokens": 1000, "temperature": 0})
body = json.loads(r.read())
assert r.status == 504 and body["error"]["code"] == "timeout", (r.status, body)
c, r = post({"prompt": "And", "max_tokens": 2, "temperature": 0})
assert r.status == 200, (r.status, r.read())
r.read()
print("serve: timeout ok")
PY
stop_server INT
grep -q "stopped by Interrupt" "$WORK/second.out.err" || fail "no stop line: $(cat "$WORK/second.out.err")"

# SIGTERM while a stream is in flight.
start_server "$WORK/third.out" "$WORK/long.json" --request-timeout 60
python3 - "$port" "$pid" <<'PY' || { kill -9 "$pid" 2>/dev/null; fail "shutdown with a stream in flight failed"; }
import http.client, json, os, signal, sys
port, pid = int(sys.argv[1]), int(sys.argv[2])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
c.request("POST", "/v1/completions",
          body=json.dumps({"prompt": "And", "max_tokens": 1000, "temperature": 0, "stream": True}))
r = c.getresponse()
assert r.status == 200, r.status
r.read(6)  # the first event has begun: the request runs
os.kill(pid, signal.SIGTERM)
rest = r.read().decode()
assert rest.rstrip().endswith("data: [DONE]"), rest[-300:]
assert '"code": "shutting_down"' in rest or '"code":"shutting_down"' in rest, rest[-300:]
print("serve: shutdown with a stream in flight ok")
PY
stop_server  # the client sent SIGTERM
echo "serve: ok"
