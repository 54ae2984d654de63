-- same_tensors.lua A B: exits 0 when two safetensors files hold bit-identical
-- tensors (every one: weights, memory, usage counts, optimizer moments),
-- else prints the first name that differs or is missing and exits 1. Used
-- by the host scripts that compare a resumed run with an uninterrupted one.
local dm = require "drlmem"
local a, b = dm.load_safetensors(arg[1]), dm.load_safetensors(arg[2])
local n = 0
for k, t in pairs(a) do
  n = n + 1
  if not b[k] or (t - b[k]):abs():max() ~= 0 then print("differs: " .. k); os.exit(1) end
end
for k in pairs(b) do if not a[k] then print("extra: " .. k); os.exit(1) end end
print(n .. " tensors identical")
