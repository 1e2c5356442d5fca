# hp serve with the official OpenAI Node SDK as the client (tests/e2e/node/serve_node.mjs), over a
# small byte-level BPE tokenizer written here (GPT-2 vocab.json + merges.txt): the SDK's
# completions, chat, streaming chat, models.list() and APIError statuses. The SDK is installed by
# scripts/setup.sh (npm, into tests/e2e/node/node_modules); missing, this test fails.
source "$(dirname "$0")/lib.sh"
NODE_DIR=$ROOT/tests/e2e/node
command -v node >/dev/null || fail "node is not installed: run scripts/setup.sh"
[[ -f $NODE_DIR/node_modules/openai/package.json ]] ||
  fail "the openai npm package is missing from $NODE_DIR/node_modules: run scripts/setup.sh"

# A Llama of 300 ids: the 256 bytes and 44 merges of the tokenizer below.
cat > "$WORK/model.json" <<'JSON'
{"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 172,
 "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256,
 "vocab_size": 300, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": false}
JSON
python3 - "$WORK/tok" <<'PY'
import json, os, sys
def byte_symbols():  # GPT-2's bytes_to_unicode
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + n); n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}
sym = byte_symbols()
vocab = {sym[b]: b for b in range(256)}
merges = []
for word in ["Ġthe", "Ġof", "Ġday", "Ġtheme", "Ġand", "the", "ing"]:
    cur = word[0]
    for ch in word[1:]:
        if cur + ch not in vocab:
            merges.append((cur, ch)); vocab[cur + ch] = len(vocab)
        cur += ch
os.makedirs(sys.argv[1])
json.dump(vocab, open(os.path.join(sys.argv[1], "vocab.json"), "w"))
with open(os.path.join(sys.argv[1], "merges.txt"), "w") as f:
    f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
assert len(vocab) <= 300, len(vocab)
PY

prompt="the theme of the day"
printf '%s' "$prompt" > "$WORK/expected.json.prompt"
"$HP" generate --model "$WORK/model.json" --tokenizer "$WORK/tok" --prompt "$prompt" --tokens 10 \
  --temperature 0 --threads 1 --json > "$WORK/expected.json" || fail "hp generate: $(cat "$WORK/expected.json")"
# BPE, not bytes: the prompt's 20 bytes are 5 tokens ("the", " theme", " of", " the", " day").
grep -q '"prompt_tokens":5,' "$WORK/expected.json" || fail "prompt not BPE-encoded: $(cat "$WORK/expected.json")"

"$HP" serve --model "$WORK/model.json" --tokenizer "$WORK/tok" --port 0 --threads 1 \
  > "$WORK/serve.out" 2> "$WORK/serve.err" &
pid=$!
trap 'kill -9 $pid 2>/dev/null || true; rm -rf "$WORK"' EXIT
for ((i = 0; i < 600; i++)); do
  port=$(grep -oE 'listening on http://127\.0\.0\.1:[0-9]+' "$WORK/serve.out" | grep -oE '[0-9]+$' || true)
  [[ -n $port ]] && break
  kill -0 "$pid" 2>/dev/null || fail "hp serve exited: $(cat "$WORK/serve.err")"
  sleep 0.1
done
[[ -n $port ]] || fail "hp serve printed no address in 60 s"
timeout 120 node "$NODE_DIR/serve_node.mjs" "$port" "$WORK/model.json" "$WORK/expected.json" ||
  fail "the Node SDK checks failed (server log: $(cat "$WORK/serve.err"))"
kill -TERM "$pid"
wait "$pid" || fail "hp serve exited $? on SIGTERM"
echo "serve_node: ok"
