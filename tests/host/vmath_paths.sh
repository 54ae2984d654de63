#!/usr/bin/env bash
# The vectorised kernels give the same bits on every dispatch path. vmath.c
# clones each kernel for AVX-512, AVX2 and the baseline, and the loader
# picks one from the CPU; valgrind's CPU has AVX2 but no AVX-512, so a run
# under valgrind takes the AVX2 clones where this CPU's native run takes
# the AVX-512 ones. Both runs of test_vmath must pass (ulp bounds, the
# packed product bit for bit), and one training step of a small model
# (V = 1001 and H = 12: vector tails everywhere; its GELU, exp, tanh,
# sigmoid and the GRU's packed product; OpenBLAS with the environment's
# core type, which does not depend on the CPU) must write the same logits
# and gradients, byte for byte, on both paths. Prints TAP.
. "$(dirname "$0")/tap.inc"
echo "1..3"
B=${DRLMEM_BUILD:-$(dirname "$E")}
cat >"$tmp/step.lua" <<'LUA'
local dm = require "drlmem"
dm.set_gemm("openblas")
dm.manual_seed(3)
local net = dm.Controller{vocab_size = 1001, embedding_dim = 8, memory_size = 6, hidden_size = 12,
                          num_layers = 2}
net:eval()
local g = dm.Generator(5)
local x, y = dm.zeros({3, 7}, "int32"), dm.zeros({3, 7}, "int32")
for b = 1, 3 do
  for t = 1, 7 do x:set(g:random(1001) - 1, b, t); y:set(g:random(1001) - 1, b, t) end
end
net:forward(x)
net:loss(y, {ignore_index = 0})
net:backward()
local out = {logits = net:logits():clone()}
for _, p in ipairs(net:parameters()) do if p.grad then out[p.name] = p.grad end end
dm.save_safetensors(arg[1], out)
LUA
if [ "${SAN:-}" = "1" ] || ! command -v valgrind >/dev/null 2>&1; then
  skip "test_vmath on the AVX2 path (under valgrind)" "needs valgrind and a build without sanitizers (optional in CI)"
  skip "a training step's bits on the AVX2 path" "needs valgrind and a build without sanitizers (optional in CI)"
  skip "the same bits on both paths" "needs valgrind and a build without sanitizers (optional in CI)"
  exit 0
fi
CMOCKA_MESSAGE_OUTPUT=TAP timeout 300 valgrind --tool=none -q --error-exitcode=99 "$B/tests/test_vmath" >"$tmp/out" 2>&1
rc=$?
t "test_vmath passes on the AVX2 path (under valgrind)" '[ $rc -eq 0 ] && ! grep -q "^not ok" "$tmp/out"'
"$E" "$tmp/step.lua" "$tmp/native.safetensors" >"$tmp/out" 2>&1 &&
  timeout 300 valgrind --tool=none -q "$E" "$tmp/step.lua" "$tmp/valgrind.safetensors" >>"$tmp/out" 2>&1
rc=$?
t "a training step runs natively and under valgrind" '[ $rc -eq 0 ]'
t "its logits and gradients are the same bytes on both paths" 'cmp "$tmp/native.safetensors" "$tmp/valgrind.safetensors" >>"$tmp/out" 2>&1'
