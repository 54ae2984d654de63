-- json_spec.lua: dm.json encodes and decodes nested tables, keeps integers
-- and floats apart, round-trips floats exactly, marks arrays, and reports
-- NaN/inf with the key path and decode errors with line and column.
local dm = require "drlmem"
local json = dm.json

describe("dm.json", function()
  it("round-trips nested tables", function()
    local v = {name = "run", epochs = 3, lr = 0.001, ok = true, off = false,
               layers = {16, 32, {a = {1, 2}}}, nested = {deep = {deeper = {"x"}}}}
    local back = json.decode(json.encode(v))
    assert.are.same(v, back)
    assert.are.equal(math.type(back.epochs), "integer")
    assert.are.equal(math.type(back.lr), "float")
  end)

  it("writes compact sorted JSON by default and indents on request", function()
    assert.are.equal('{"a":1,"b":[1,2.5,"x"],"c":{"d":null}}',
                     json.encode({c = {d = json.null}, b = {1, 2.5, "x"}, a = 1}))
    assert.are.equal('{\n  "a": 1,\n  "b": 2\n}', json.encode({b = 2, a = 1}, {indent = 2}))
    assert.are.equal("1.0", json.encode(1.0))
    assert.are.equal("1", json.encode(1))
    assert.are.equal('"h\\"i\\n"', json.encode('h"i\n'))
  end)

  it("writes floats with the fewest digits that round-trip", function()
    assert.are.equal("[0.1,0.3]", json.encode({0.1, 0.3}))
    -- one digit count serves the whole value: the float needing most wins
    assert.are.equal("[0.10000000000000001,0.30000000000000004]", json.encode({0.1, 0.1 + 0.2}))
    assert.are.equal('{"loss":0.1,"lr":0.25}', json.encode({loss = 0.1, lr = 0.25}))
    for _, x in ipairs({1/3, 2^-1074, 1.7976931348623157e308, -0.0, 123456789.123, 1e300, 5e-324}) do
      assert.are.equal(x, json.decode(json.encode(x)))
      assert.are.equal(x, json.decode(json.encode({x}))[1])
    end
    -- the float exactly representable in float32 a metric usually is
    local f32 = string.unpack("<f", string.pack("<f", 0.1))
    assert.are.equal(f32, json.decode(json.encode({loss = f32})).loss)
  end)

  it("marks arrays and keeps empty ones", function()
    assert.are.equal("{}", json.encode({}))
    assert.are.equal("[]", json.encode(json.array()))
    assert.are.equal("[]", json.encode(json.array({})))
    local d = json.decode('{"a": [], "b": {}}')
    assert.are.equal('{"a":[],"b":{}}', json.encode(d))
    local arr = json.decode("[1, null, 3]")
    assert.are.equal(3, #arr)
    assert.are.equal(json.null, arr[2])
    assert.are.equal("null", tostring(json.null))
  end)

  it("refuses NaN and infinities, naming the key path", function()
    local ok, err = pcall(json.encode, {metrics = {{loss = 1.0}, {loss = 0/0}}})
    assert.is_false(ok)
    assert.matches("json.encode: metrics[2].loss: NaN", err, 1, true)
    ok, err = pcall(json.encode, {x = {["odd key"] = math.huge}})
    assert.is_false(ok)
    assert.matches('x["odd key"]: inf', err, 1, true)
    ok, err = pcall(json.encode, -math.huge)
    assert.is_false(ok)
    assert.matches("(top level): -inf", err, 1, true)
  end)

  it("refuses tables JSON cannot express", function()
    local ok, err = pcall(json.encode, {1, 2, x = 3})
    assert.is_false(ok)
    assert.matches("mixes array items and string keys", err, 1, true)
    ok, err = pcall(json.encode, {a = {[1] = 1, [3] = 3}})
    assert.is_false(ok)
    assert.matches("a: array has holes", err, 1, true)
    ok, err = pcall(json.encode, {[1.5] = 1})
    assert.is_false(ok)
    assert.matches("number key", err, 1, true)
    local cyc = {}
    cyc.self = cyc
    ok, err = pcall(json.encode, cyc)
    assert.is_false(ok)
    assert.matches("self: table contains itself", err, 1, true)
    ok, err = pcall(json.encode, {f = print})
    assert.is_false(ok)
    assert.matches("f: cannot encode a function", err, 1, true)
    ok, err = pcall(json.encode, {s = "\xff"})
    assert.is_false(ok)
    assert.matches("s: string is not valid UTF%-8", err)
    -- a table reached twice without a cycle is fine
    local shared = {1}
    assert.are.equal('{"a":[1],"b":[1]}', json.encode({a = shared, b = shared}))
  end)

  it("reports decode errors with line and column", function()
    local ok, err = pcall(json.decode, '{"a": 1,\n "b": }')
    assert.is_false(ok)
    assert.matches("json.decode: line 2, column", err, 1, true)
    ok, err = pcall(json.decode, "[1, 2", "metrics.jsonl")
    assert.is_false(ok)
    assert.matches("json.decode: metrics.jsonl: line 1", err, 1, true)
    ok, err = pcall(json.decode, '{"a": 1, "a": 2}')
    assert.is_false(ok)
    assert.matches("duplicate", err, 1, true)
    assert.are.equal(42, json.decode("42"))
    assert.are.equal("s", json.decode('"s"'))
    assert.are.equal("a\0b", json.decode('"a\\u0000b"'))
  end)
end)
