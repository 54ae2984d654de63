-- optim_spec.lua: the Lua surface of dm.optim and dm.clip_grad_norm: AdamW
-- and SGD against PyTorch (tests/fixtures/optim/optim.json), frozen entries,
-- zero_grad, state save/restore, set_lr, the three schedulers (sequences
-- against torch, state round trips, writing the lr into the optimizer),
-- clipping a module and a list, and the error texts.
local dm = require "drlmem"

local function err_of(f, ...)
  local ok, msg = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return (tostring(msg):gsub("^[^:\n]+:%d+: ", ""))
end

local function read_fixture()
  local f = assert(io.open("tests/fixtures/optim/optim.json"))
  local text = f:read("a")
  f:close()
  return dm.json.decode(text)
end

-- Three parameters as in the fixture: w (3,4), b (5), frozen (2, no grad).
local function make_params(fx)
  local function t(vals, shape)
    return dm.tensor(vals):reshape(table.unpack(shape))
  end
  return {
    {name = "w", value = t(fx.init.w, {3, 4}), grad = dm.zeros(3, 4)},
    {name = "b", value = t(fx.init.b, {5}), grad = dm.zeros(5)},
    {name = "frozen", value = t(fx.init.frozen, {2})},
  }
end

local function set_grads(params, g)
  params[1].grad:copy(dm.tensor(g.w):reshape(3, 4))
  params[2].grad:copy(dm.tensor(g.b))
end

local function flat_close(t, ref, tol)
  return dm.allclose(t:reshape(t:numel()), dm.tensor(ref), tol, tol)
end

describe("dm.optim optimizers", function()
  local fx = read_fixture()

  local function run(name, make)
    local case = fx.optimizers[name]
    local params = make_params(fx)
    local frozen0 = params[3].value:clone()
    local opt = make(params, case.config)
    local grads = fx[case.grads or "grads"]
    for s = 1, #case.after do
      set_grads(params, grads[s])
      opt:step()
      assert.is_true(flat_close(params[1].value, case.after[s].w, 1e-6), name .. " w step " .. s)
      assert.is_true(flat_close(params[2].value, case.after[s].b, 1e-6), name .. " b step " .. s)
      assert.is_true(dm.allclose(params[3].value, frozen0, 0, 0))
    end
    return opt, params
  end

  it("AdamW matches torch over 5 steps, state included", function()
    local opt = run("adamw", function(p, c)
      return dm.optim.AdamW(p, {lr = c.lr, weight_decay = c.weight_decay})
    end)
    local st = opt:state()
    assert.are.equal("AdamW", st.kind)
    assert.are.equal(5, st.step.w)
    assert.are.equal(0, st.step.frozen)
    assert.is_true(flat_close(st.exp_avg_sq.w, fx.optimizers.adamw.state.w.exp_avg_sq, 1e-6))
    assert.are.same({3, 4}, st.exp_avg.w:shape())
  end)

  it("Adam with L2 decay and SGD with nesterov match torch", function()
    run("adam_wd", function(p, c) return dm.optim.Adam(p, {lr = c.lr, weight_decay = c.weight_decay}) end)
    run("sgd_nesterov", function(p, c)
      return dm.optim.SGD(p, {lr = c.lr, momentum = c.momentum, nesterov = true,
                              weight_decay = c.weight_decay})
    end)
    run("adamw_betas", function(p, c)
      return dm.optim.AdamW(p, {lr = c.lr, betas = c.betas, eps = c.eps, weight_decay = c.weight_decay})
    end)
  end)

  it("Adam and AdamW match torch with 1e-4 gradients (eps after the bias correction)", function()
    run("adam_small", function(p, c) return dm.optim.Adam(p, {lr = c.lr}) end)
    run("adamw_small", function(p, c)
      return dm.optim.AdamW(p, {lr = c.lr, weight_decay = c.weight_decay})
    end)
  end)

  it("restores its state into a fresh optimizer and continues identically", function()
    local pa, pb = make_params(fx), make_params(fx)
    local a = dm.optim.AdamW(pa, {lr = 0.01, weight_decay = 0.1})
    for s = 1, 2 do set_grads(pa, fx.grads[s]); a:step() end
    pb[1].value:copy(pa[1].value); pb[2].value:copy(pa[2].value)
    local b = dm.optim.AdamW(pb, {lr = 0.5, weight_decay = 0.1})
    b:load_state(a:state())
    assert.are.equal(0.01, b:get_lr())
    for s = 3, 5 do
      set_grads(pa, fx.grads[s]); set_grads(pb, fx.grads[s]); a:step(); b:step()
    end
    assert.is_true(dm.allclose(pa[1].value, pb[1].value, 0, 0))
    assert.is_true(flat_close(pb[1].value, fx.optimizers.adamw.after[5].w, 1e-6))
    assert.matches("no parameter named 'nope'", err_of(b.load_state, b, {step = {nope = 1}}))
    assert.matches("state is for SGD", err_of(b.load_state, b, {kind = "SGD"}))
  end)

  it("zero_grad clears grads, set_lr/get_lr work, tostring names it", function()
    local p = make_params(fx)
    set_grads(p, fx.grads[1])
    local opt = dm.optim.SGD(p, {lr = 0.1})
    opt:zero_grad()
    assert.are.equal(0, p[1].grad:abs():sum())
    opt:set_lr(0.25)
    assert.are.equal(0.25, opt:get_lr())
    assert.are.equal("SGD(lr=0.25, weight_decay=0, params=3)", tostring(opt))
  end)

  it("trains a memory through its :parameters()", function()
    local m = dm.Memory(4, 3)
    local opt = dm.optim.Adam(m, {lr = 0.1})
    local before = m.keys:clone()
    m:read(dm.randn(2, 3))
    m:backward(dm.ones(2, 3))
    opt:step()
    assert.is_false(dm.allclose(m.keys, before, 0, 0))
  end)

  it("rejects bad options and parameter lists with clear messages", function()
    local p = make_params(fx)
    assert.are.equal("Adam: unknown option 'lrr' (known: lr, betas, eps, weight_decay)",
                     err_of(dm.optim.Adam, p, {lrr = 1}))
    assert.are.equal("Adam: lr must be >= 0, got -1", err_of(dm.optim.Adam, p, {lr = -1}))
    assert.matches("nesterov needs momentum > 0", err_of(dm.optim.SGD, p, {nesterov = true}))
    assert.are.equal("SGD: parameter 1 ('x') has no value tensor",
                     err_of(dm.optim.SGD, {{name = "x", grad = dm.ones(2)}}))
    assert.are.equal("SGD: parameter 1 ('x'): grad is 3 but value is 2",
                     err_of(dm.optim.SGD, {{name = "x", value = dm.ones(2), grad = dm.ones(3)}}))
    assert.matches("expected a list", err_of(dm.optim.SGD, 42))
    assert.matches("duplicate parameter name 'w'", err_of(dm.optim.SGD, {p[1], p[1]}))
    local opt = dm.optim.SGD(p, {lr = 0.1})
    p[1].value:free()
    assert.matches("parameter 'w': its value tensor was closed", err_of(opt.step, opt))
  end)
end)

describe("dm.clip_grad_norm", function()
  local fx = read_fixture()
  it("clips like torch and returns the total norm", function()
    for _, case in ipairs({"clips", "clamped"}) do
      local ref = fx.clip[case]
      local p = make_params(fx)
      set_grads(p, fx.grads[1])
      local total = dm.clip_grad_norm(p, ref.max_norm)
      assert.is_true(math.abs(total - ref.total) <= 1e-6 * ref.total)
      assert.is_true(flat_close(p[1].grad, ref.w, 1e-6))
      assert.is_true(flat_close(p[2].grad, ref.b, 1e-6))
    end
  end)
  it("accepts a module and lists with grad-only entries", function()
    local m = dm.Memory(2, 2)
    m:read(dm.randn(1, 2)); m:backward(dm.ones(1, 2))
    local total = dm.clip_grad_norm(m, 1e-3)
    assert.is_true(total > 0)
    local g = m:parameters()
    local after = math.sqrt((g[1].grad * g[1].grad):sum() + (g[2].grad * g[2].grad):sum())
    assert.is_true(math.abs(after - 1e-3) < 1e-6)
    assert.are.equal(5, dm.clip_grad_norm({{grad = dm.tensor{3, 4}}}, 100))
    assert.matches("max_norm", err_of(dm.clip_grad_norm, {}, nil))
  end)
end)

describe("dm.optim schedulers", function()
  local fx = read_fixture()

  local function seq(sched, opt, n, metrics)
    local got = {opt:get_lr()}
    for e = 1, n - 1 do
      got[#got + 1] = sched:step(metrics and metrics[e])
      assert.are.equal(got[#got], opt:get_lr())
    end
    return got
  end

  local function check(got, want)
    assert.are.equal(#want, #got)
    for i = 1, #want do
      assert.is_true(math.abs(got[i] - want[i]) <= 1e-9 * math.abs(want[i]),
                     ("epoch %d: %.17g vs %.17g"):format(i, got[i], want[i]))
    end
  end

  local function new_opt(lr)
    return dm.optim.SGD({{name = "x", value = dm.zeros(1), grad = dm.zeros(1)}}, {lr = lr})
  end

  it("CosineAnnealingLR follows torch over 25 epochs and restores its state", function()
    local c = fx.schedulers.cosine
    local opt = new_opt(c.lr0)
    local s = dm.optim.CosineAnnealingLR(opt, {T_max = c.T_max, eta_min = c.eta_min})
    check(seq(s, opt, #c.lrs), c.lrs)
    local opt2 = new_opt(c.lr0)
    local s2 = dm.optim.CosineAnnealingLR(opt2, {T_max = c.T_max, eta_min = c.eta_min})
    local saved
    for e = 1, 5 do s2:step(); if e == 3 then saved = s2:state() end end
    local s3 = dm.optim.CosineAnnealingLR(opt2, {T_max = 1})
    s3:load_state(saved)
    assert.are.equal(c.lrs[4], opt2:get_lr())
    assert.are.equal(c.lrs[5], s3:step())
    assert.are.equal("CosineAnnealingLR: option T_max is required", err_of(dm.optim.CosineAnnealingLR, opt, {}))
  end)

  it("a scheduler state that no run could have saved is refused in one line, changing nothing", function()
    local opt = new_opt(0.1)
    local s = dm.optim.StepLR(opt, {step_size = 2, gamma = 0.5})
    s:step()
    local before = s:state()
    local function bad(t) return err_of(s.load_state, s, t) end
    assert.are.equal("LRScheduler.load_state: last_epoch: expected a number, got string", bad({last_epoch = "x"}))
    assert.matches("^StepLR: state last_epoch must be a whole number >= 0, got %-1$", bad({lr = 9, last_epoch = -1}))
    assert.matches("^StepLR: state step_size must be >= 1$", bad({step_size = 0}))
    assert.matches("^StepLR: state lr must be finite, got %-?nan$", bad({lr = 0 / 0}))
    assert.are.same(before, s:state())
    assert.are.equal(0.1, opt:get_lr())
  end)

  it("StepLR and ReduceLROnPlateau follow torch", function()
    local st = fx.schedulers.step
    local opt = new_opt(st.lr0)
    check(seq(dm.optim.StepLR(opt, {step_size = st.step_size, gamma = st.gamma}), opt, #st.lrs), st.lrs)
    for _, name in ipairs({"plateau_default", "plateau_max_abs"}) do
      local pl = fx.schedulers[name]
      local o = new_opt(pl.lr0)
      local s = dm.optim.ReduceLROnPlateau(o, pl.opts)
      check(seq(s, o, #pl.lrs, pl.metrics), pl.lrs)
      local state = s:state()
      assert.are.equal("ReduceLROnPlateau", state.kind)
    end
    local o = new_opt(0.1)
    local s = dm.optim.ReduceLROnPlateau(o)
    assert.matches("expected a metric", err_of(s.step, s))
    assert.matches("option mode: expected 'min' or 'max', got up",
                   err_of(dm.optim.ReduceLROnPlateau, o, {mode = "up"}))
    assert.matches("factor must be < 1", err_of(dm.optim.ReduceLROnPlateau, o, {factor = 2}))
    assert.matches("unknown option 'T_max'", err_of(dm.optim.StepLR, o, {step_size = 2, T_max = 3}))
  end)
end)
