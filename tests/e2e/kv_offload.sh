# KV offload under --device-memory (docs/inference.md, "KV offload"), on a small Llama of 512
# positions with random weights:
# - greedy tokens with the host blocks fetched per layer (host), attended in place (direct) or
#   fetched from a memory-mapped file (disk) equal the unconstrained run's, with KV really
#   offloaded, the measured device peak under the budget, and nothing left in the disk tier's
#   directory; a directory that cannot hold the file is refused;
# - --kv-offload none at a context over the budget, and an offload budget under the smallest
#   feasible one, are refused before running, naming the budget that would do;
# - hp plan --infer-context prints the same plan without running;
# - hp bench context finds a longer prompt with offload than resident (ratio > 1), its tokens
#   at the offloaded maximum bitwise those of a run without a budget.
source "$(dirname "$0")/lib.sh"
field() { grep -oE "\"$1\":(\[[^]]*\]|[^,}]*)" | sed "s/^\"$1\"://"; }
cat > "$WORK/small.json" <<'JSON'
{"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 172,
 "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512,
 "vocab_size": 256, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": false}
JSON
gen() {
  "$HP" generate --threads 1 --model "$WORK/small.json" --prompt-tokens 300 --tokens 20 \
    --temperature 0 --json "$@"
}
free=$(gen) || fail "hp generate: $free"
[[ $(field kv_offloaded_bytes <<<"$free") == 0 ]] || fail "offloaded without a budget: $free"
mkdir -p "$WORK/kvdisk"
for mode in host:fetch:1100 direct:direct:1000 disk:fetch:1100; do
  IFS=: read -r flag plan kib <<<"$mode"
  out=$(gen --device-memory "${kib}KiB" --kv-offload "$flag" --offload-dir "$WORK/kvdisk") ||
    fail "--kv-offload $flag: $out"
  [[ $(field kv_plan <<<"$out") == "\"$plan\"" ]] || fail "--kv-offload $flag: not $plan: $out"
  [[ $(field tokens <<<"$out") == "$(field tokens <<<"$free")" ]] ||
    fail "--kv-offload $flag: greedy tokens differ: $out vs $free"
  (($(field kv_offloaded_bytes <<<"$out") > 0)) || fail "--kv-offload $flag: nothing offloaded"
  disk_bytes=$(field kv_disk_bytes <<<"$out")
  if [[ $flag == disk ]]; then
    ((disk_bytes == $(field kv_offloaded_bytes <<<"$out"))) || fail "disk tier not used: $out"
  else
    ((disk_bytes == 0)) || fail "--kv-offload $flag used the disk tier: $out"
  fi
  peak=$(field peak_device_bytes <<<"$out")
  ((peak > 0 && peak <= kib * 1024)) || fail "--kv-offload $flag: peak $peak over ${kib}KiB"
done
[[ -z $(ls -A "$WORK/kvdisk") ]] || fail "--kv-offload disk left files: $(ls -A "$WORK/kvdisk")"
expect_fail "cannot back allocations with files in '$WORK/missing'" \
  gen --device-memory 1100KiB --kv-offload disk --offload-dir "$WORK/missing"
# --offload-weights: under a budget too small for the weights beside the KV's least, the
# gathered embedding and then the largest weights stay in the host tier. Attended in place
# (direct) they are read there. With the blocks fetched (host), every program runs under the
# offload planner of training: each layer's host blocks are gathered into a staging by its
# prefetch (once the layer's kv_write has run), and the weights a token reads whole are
# streamed the same way, prefetched before their matmul and dropped after; only one program's
# share is on the device at a time, so host mode fits budgets direct cannot. The same tokens,
# the device peak under the budget; below what even that needs, refused.
for spec in "900KiB direct 0" "900KiB host 0" "700KiB host 2" "400KiB host 7"; do
  read -r budget mode least <<<"$spec"
  out=$(gen --device-memory "$budget" --kv-offload "$mode" --offload-weights) ||
    fail "--offload-weights $mode at $budget: $out"
  [[ $(field tokens <<<"$out") == "$(field tokens <<<"$free")" ]] ||
    fail "--offload-weights $mode at $budget: greedy tokens differ: $out vs $free"
  (($(field weight_host_bytes <<<"$out") > 0)) || fail "--offload-weights: no weight on the host: $out"
  (($(field peak_device_bytes <<<"$out") <= ${budget%KiB} * 1024)) ||
    fail "--offload-weights $mode at $budget: over budget: $out"
  streamed=$(field weights_streamed <<<"$out") fetched=$(field planner_bytes_fetched <<<"$out")
  if [[ $mode == direct ]]; then
    ((streamed == 0 && fetched == 0)) || fail "--offload-weights direct moved something: $out"
  else
    ((streamed >= least)) || fail "--offload-weights $mode at $budget: $streamed streamed: $out"
    # Each of the at least 20 program runs fetched them (all host weights but the 64 KiB table)
    # and, from the prefill's second chunk on, host blocks.
    host=$(field weight_host_bytes <<<"$out") kv=$(field kv_offloaded_bytes <<<"$out")
    ((fetched > 20 * (host - 65536) && kv > 0)) ||
      fail "--offload-weights $mode at $budget: $fetched bytes fetched for $host on the host: $out"
  fi
done
expect_fail "every weight in the host tier" gen --device-memory 500KiB --kv-offload direct \
  --offload-weights
expect_fail "every weight in the host tier" gen --device-memory 300KiB --kv-offload host \
  --offload-weights
# hp plan --explain shows the decode step's plan as the training planner's: each streamed weight
# prefetched before the matmul that reads it.
p=$("$HP" plan --model "$WORK/small.json" --infer-context 320 --device-memory 400KiB \
  --kv-offload host --offload-weights --explain) || fail "hp plan --explain, streamed: $p"
grep -q "each layer's staging and [0-9]* weights streamed by the offload planner" <<<"$p" ||
  fail "hp plan: no streamed plan: $p"
grep -qE "prefetch +[0-9.]+ MiB +[0-9]+ -> [0-9]+ +kv_staging.1" <<<"$p" ||
  fail "hp plan --explain: layer 1's staging not prefetched: $p"
grep -qE "prefetch +[0-9.]+ MiB +[0-9]+ -> [0-9]+ +lm_head.weight" <<<"$p" ||
  fail "hp plan --explain: lm_head.weight not prefetched: $p"
expect_fail "the smallest budget that holds it is" gen --device-memory 1000KiB --kv-offload none
expect_fail "the smallest feasible budget is" gen --device-memory 800KiB --kv-offload host
p=$("$HP" plan --model "$WORK/small.json" --infer-context 320 --device-memory 1100KiB \
  --kv-offload host) || fail "hp plan --infer-context: $p"
grep -q "kv plan: fetch" <<<"$p" || fail "hp plan --infer-context: no fetch plan: $p"
# The predicted decode: a time and the read rate the probe measured, both finite and positive
# (a memory read rate between 0.1 and 10000 GB/s).
rate=$(sed -n 's/.*predicted decode: \([0-9.]*\) ms\/token reading \([0-9.]*\) GB\/s.*/\1 \2/p' <<<"$p")
awk -v r="$rate" 'BEGIN { split(r, x, " "); exit !(x[1] > 0 && x[2] >= 0.1 && x[2] <= 10000) }' ||
  fail "hp plan --infer-context: predicted decode and read rate '$rate' in: $p"
grep -q "per decode token: device reads" <<<"$p" || fail "hp plan: no decode bytes: $p"

b=$("$HP" bench context --model "$WORK/small.json" --device-memory 1100KiB --tokens 8 \
  --kv-offload host --json) || fail "hp bench context: $b"
for key in resident_max offload_max ratio dtype; do
  grep -q "\"$key\":" <<<"$b" || fail "bench context --json lacks $key: $b"
done
awk -v r="$(field ratio <<<"$b")" 'BEGIN { exit !(r > 1) }' || fail "ratio not over 1: $b"
(($(field resident_max <<<"$b") > 0)) || fail "no resident maximum: $b"
[[ $(field bitwise_equal_at_offload_max <<<"$b") == true ]] || fail "tokens differ: $b"
echo "kv offload: ok ($b)"
