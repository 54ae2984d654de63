#!/usr/bin/env bash
# No config value gives a Lua traceback: scripts/train.lua (configs/tiny.yaml,
# one epoch, a 30-line data file) runs with each numeric key of the schema
# set to 0, -1, 1000000000, 1e300 and .nan in turn, through a config file (the write-policy keys with
# write_policy=reinforce, where they are read). Each run either trains
# normally (status 0), is refused as a config error naming the file, line
# and key (status 2 after the usage, as every argument error), or stops
# with status 1 and one line on stderr (or the loop's stop on a non-finite
# loss: "stopped: the training loss is nan ..." and what to try); a run
# still going after 60 s (epochs=1e9, say) must have printed no traceback.
# Sizes that cannot fit are refused by drlmem.budget before they allocate.
source "$(dirname "$0")/tap.inc"
keys=$("$E" -e 'local t = {} for _, k in ipairs(dm.config.order) do local f = dm.config.fields[k]
  if f.kind == "int" or f.kind == "number" then t[#t + 1] = k end end print(table.concat(t, " "))')
rl=" episodic_slots policy_bias_init policy_gamma write_cost policy_alpha baseline_beta entropy_eta entropy_decay curriculum_epochs advantage_decay random_write_rate "
values="0 -1 1000000000 1e300 .nan"
nk=$(wc -w <<<"$keys"); nv=$(wc -w <<<"$values")
echo "1..$((nk * nv + 1))"
t "the schema has numeric keys to try" '[ "$nk" -gt 30 ]'
for i in $(seq 1 30); do echo "mary went to the park and saw dog $((i % 7)) ."; done > "$tmp/d.txt"
for k in $keys; do
  extra=()
  [[ "$rl" == *" $k "* ]] && extra=(--set write_policy=reinforce)
  for v in $values; do
    grep -vE "^($k|epochs|data_path|save_path|log_file):" "$root/configs/tiny.yaml" > "$tmp/c.yaml"
    echo "$k: $v" >> "$tmp/c.yaml"
    [ "$k" = epochs ] || echo "epochs: 1" >> "$tmp/c.yaml"
    printf 'data_path: "%s"\nsave_path: "%s"\nlog_file: "%s"\n' "$tmp/d.txt" "$tmp/m/" "$tmp/l/t.log" >> "$tmp/c.yaml"
    (cd "$tmp" && timeout 60 "$E" "$root/scripts/train.lua" --config "$tmp/c.yaml" --progress none \
       "${extra[@]}" >"$tmp/stdout" 2>"$tmp/out"); rc=$?
    # a refused config is status 2 and one "Error: FILE:LINE: key ..." line;
    # anything refused later is status 1 and one line
    lines=$(grep -c . "$tmp/out"); errs=$(grep -c "^Error: $tmp/c.yaml:[0-9]*: key '$k'" "$tmp/out")
    t "$k=$v: a normal run, a refused config or status 1 and one line (rc=$rc, $lines lines)" \
      '! grep -qi "traceback" "$tmp/out" "$tmp/stdout" && clean && { [ $rc -eq 0 ] || [ $rc -eq 124 ] \
         || { [ $rc -eq 1 ] && { [ "$lines" -eq 1 ] || head -1 "$tmp/out" | grep -q "^stopped: the training loss is"; }; } \
         || { [ $rc -eq 2 ] && [ "$errs" -eq 1 ] && [ "$lines" -eq 1 ]; }; }'
  done
done
