-- sys_spec.lua: the process facts drlmem adds to Lua (bind/sys.c).
local dm = require "drlmem"

describe("dm.clock", function()
  it("is a monotonic wall clock finer than a second", function()
    local t0 = dm.clock()
    -- Busy-wait on the clock itself: it must advance by less than a second.
    local t1 = dm.clock()
    while t1 == t0 do t1 = dm.clock() end
    assert.is_true(t1 > t0)
    assert.is_true(t1 - t0 < 0.5)
  end)
end)

describe("dm.isatty", function()
  it("answers for named streams and numbers, and rejects nonsense", function()
    assert.is_boolean(dm.isatty())
    assert.is_boolean(dm.isatty("stderr"))
    assert.is_boolean(dm.isatty(0))
    assert.has_error(function() dm.isatty("stdpot") end)
  end)
end)

describe("dm.set_num_threads", function()
  it("sets OpenBLAS's thread count and refuses bad counts", function()
    local before = dm.get_num_threads()
    dm.set_num_threads(1)
    assert.are.equal(1, dm.get_num_threads())
    dm.set_num_threads(before)
    local ok, err = pcall(dm.set_num_threads, 0)
    assert.is_false(ok)
    assert.matches("set_num_threads: expected 1..1024 threads, got 0", err, 1, true)
  end)
end)

describe("dm.blas_info", function()
  it("names the OpenBLAS kernel set, its build line and its thread count", function()
    local info = dm.blas_info()
    assert.is_string(info.corename)
    assert.is_true(#info.corename > 0)
    assert.matches("^OpenBLAS %d", info.config)
    assert.are.equal(dm.get_num_threads(), info.num_threads)
  end)
end)
