-- help.lua: the one table of documentation for what `dm` offers, and the
-- REPL's help().
--
--   help()               every public name of dm, one line each
--   help(dm.Memory)      the signature, a sentence, and its methods
--   help(m)              the same for an object (found by its __name)
--   help(m.read)         a function or method, found by identity
--   help("dm.zeros")     or by name
--
-- help.docs maps a name to {signature, sentence}: "dm.x" for each name of
-- the module (tests/lua/help_spec.lua fails when a public name of dm, or of
-- its C sub-tables dm.nn, dm.optim, dm.json, dm.yaml, dm.datautil, has no
-- entry), and "Class:method" for the methods worth a sentence. help.objects
-- maps a userdata's __name to the entry that explains it.
local dm = require "drlmem"

local help = {}

local D = {}
help.docs = D
local function doc(name, sig, text) D[name] = { sig, text } end

-- tensors
doc("dm.Tensor", "dm.Tensor(d1, ..., [dtype]) -> Tensor", "The tensor class (float32, or int32 for token ids); called, it is dm.zeros; its fields are the methods.")
doc("dm.tensor", "dm.tensor(nested_table, [dtype]) -> Tensor", "A tensor from a nested Lua table of numbers, shape read from the nesting.")
doc("dm.zeros", "dm.zeros(d1, ..., [dtype]) -> Tensor", "A tensor of zeros of the given shape.")
doc("dm.ones", "dm.ones(d1, ..., [dtype]) -> Tensor", "A tensor of ones of the given shape.")
doc("dm.full", "dm.full({d1, ...}, value, [dtype]) -> Tensor", "A tensor filled with value.")
doc("dm.arange", "dm.arange([start,] stop, [step], [dtype]) -> Tensor", "The numbers from start up to (not including) stop, as torch.arange.")
doc("dm.rand", "dm.rand(d1, ..., [generator]) -> Tensor", "Uniform draws in [0, 1) from the global seed or a dm.Generator.")
doc("dm.randn", "dm.randn(d1, ..., [generator]) -> Tensor", "Standard normal draws from the global seed or a dm.Generator.")
doc("dm.matmul", "dm.matmul(a, b) -> Tensor", "The matrix product of two 2-D (or batched 3-D) float32 tensors.")
doc("dm.softmax", "dm.softmax(t) -> Tensor", "Softmax along the last dimension.")
doc("dm.log_softmax", "dm.log_softmax(t) -> Tensor", "Log-softmax along the last dimension, computed stably.")
doc("dm.allclose", "dm.allclose(a, b, [rtol], [atol]) -> boolean", "Whether |a - b| <= atol + rtol * |b| everywhere, as torch.allclose.")
-- randomness
doc("dm.manual_seed", "dm.manual_seed(n)", "Seeds the global generator: initialisation, dropout, rand and randn.")
doc("dm.get_rng_state", "dm.get_rng_state() -> state", "The global generator's state, for set_rng_state.")
doc("dm.set_rng_state", "dm.set_rng_state(state)", "Restores a state from get_rng_state, so draws repeat bit for bit.")
doc("dm.randperm", "dm.randperm(n) -> table", "A random permutation of 1..n from the global generator (Fisher-Yates).")
doc("dm.Generator", "dm.Generator(seed) -> Generator", "A generator of its own (xoshiro256**): random(), randperm(n), state().")
-- layers, memory, model, training
doc("dm.nn", "dm.nn", "The layers: Embedding, Linear, GELU, Dropout, GRU, LSTM, and cross_entropy.")
doc("dm.nn.Embedding", "dm.nn.Embedding(num, dim) -> module", "A lookup table of num rows of width dim; forward takes int32 token ids.")
doc("dm.nn.Linear", "dm.nn.Linear(in, out, [{bias = true, init = ...}]) -> module", "y = x W^T + b, with PyTorch's parameter names weight and bias.")
doc("dm.nn.GELU", "dm.nn.GELU() -> module", "The exact (erf) GELU activation.")
doc("dm.nn.Dropout", "dm.nn.Dropout([p = 0.5]) -> module", "Zeroes each element with probability p in training, scaling the rest by 1/(1-p).")
doc("dm.nn.GRU", "dm.nn.GRU(input, hidden, [layers = 1]) -> module", "A batch-first multi-layer GRU with PyTorch's gate order and names.")
doc("dm.nn.LSTM", "dm.nn.LSTM(input, hidden, [layers = 1]) -> module", "A batch-first multi-layer LSTM with PyTorch's gate order and names.")
doc("dm.nn.cross_entropy", "dm.nn.cross_entropy(logits, targets, [{ignore_index = id}]) -> loss, dlogits", "Mean cross-entropy over (B,T,V) logits and its gradient.")
doc("dm.Memory", "dm.Memory(slots, width) -> Memory", "The differentiable key-value memory: read(q) = softmax(q keys^T) values; write blends new rows in.")
doc("Memory:read", "m:read(query) -> out, weights", "Reads (N,width) queries: the attention-weighted values and the (N,slots) weights.")
doc("Memory:write", "m:write(keys, values, strength)", "Blends the mean of the L2-normalised rows into every slot, then renormalises.")
doc("Memory:usage", "m:usage() -> Tensor", "How often each slot won a read since the last reset_usage.")
doc("Memory:backward", "m:backward(dout) -> dquery", "The gradient of the last read with respect to its query; key and value gradients add up in m.")
doc("Memory:topk", "m:topk(query, k) -> weights, slots", "The k best-matching slots of each query and their weights, without counting usage.")
doc("dm.Controller", "dm.Controller(cfg) -> Controller", "The whole DRLMemNet model: embedding, memory read, GRU, output layer.")
doc("Controller:forward", "net:forward(tokens) -> logits", "(B,T) int32 tokens to (B,T,V) logits.")
doc("Controller:backward", "net:backward([dlogits])", "Adds the gradients of every parameter for the last forward (no argument: net:loss's gradient).")
doc("Controller:loss", "net:loss(targets [, {ignore_index=, scale=}]) -> loss, count", "Cross-entropy of the last logits, computed where they live; its gradient waits for net:backward().")
doc("Controller:logits", "net:logits() -> Tensor", "(B,T,V) view of the last forward's logits, no copy.")
doc("dm.controller_fields", "dm.controller_fields() -> {field, ...}", "The model config's keys as the C core declares them (name, kind, default, check, doc).")
doc("dm.controller_sizes", "dm.controller_sizes(cfg, B, T) -> table", "Parameter and activation size tables and bytes of a model, without allocating it.")
doc("Controller:write_memory", "net:write_memory(strength, [{empty = true}])", "The memory write of one optimizer step, from the last forward (empty: this rank's shard had no rows).")
doc("Controller:set_reduce", "net:set_reduce(on)", "Across processes: the memory write's means and the reinforce policy's statistics are summed over the dm.dist ranks.")
doc("Controller:last_slots", "net:last_slots() -> Tensor", "(B,T) the memory slot that answered each token of the last forward.")
doc("Controller:last_attention", "net:last_attention() -> Tensor", "(B,T,M) the memory read's attention weights of the last forward.")
doc("Controller:set_state", "net:set_state(h [, c])", "The cell's initial state (num_layers,B,H) of every following forward, a constant (truncated BPTT); nil clears it.")
doc("Controller:final_state", "net:final_state() -> h [, c]", "The last forward's final cell state (num_layers,B,H); c for an LSTM.")
doc("Controller:memory_usage", "net:memory_usage() -> Tensor", "How often each memory slot won a read.")
doc("Controller:write_trace", "net:write_trace(i) -> {steps = {{t, token, p_write, write, slot, attention}, ...}, slots = K}", "Sequence i of the last forward through the episodic memory: per step the token, write probability and weight, slot written (nil: none) and the read over slots.")
doc("dm.optim", "dm.optim", "The optimizers SGD, Adam, AdamW and the schedules CosineAnnealingLR, ReduceLROnPlateau, StepLR.")
doc("dm.optim.SGD", "dm.optim.SGD(params, {lr, momentum, dampening, nesterov, weight_decay}) -> Optimizer", "Stochastic gradient descent, as torch.optim.SGD.")
doc("dm.optim.Adam", "dm.optim.Adam(params, {lr, betas, eps, weight_decay}) -> Optimizer", "Adam, as torch.optim.Adam.")
doc("dm.optim.AdamW", "dm.optim.AdamW(params, {lr, betas, eps, weight_decay}) -> Optimizer", "Adam with decoupled weight decay, as torch.optim.AdamW.")
doc("dm.optim.CosineAnnealingLR", "dm.optim.CosineAnnealingLR(opt, {T_max, eta_min}) -> schedule", "Cosine learning-rate annealing; :step() once per epoch.")
doc("dm.optim.ReduceLROnPlateau", "dm.optim.ReduceLROnPlateau(opt, {mode, factor, patience, threshold, ...}) -> schedule", "Lowers the rate when :step(val_loss) stops improving.")
doc("dm.optim.StepLR", "dm.optim.StepLR(opt, {step_size, gamma}) -> schedule", "Multiplies the rate by gamma every step_size epochs.")
doc("dm.clip_grad_norm", "dm.clip_grad_norm(module_or_params, max_norm) -> norm", "Scales the gradients so their total L2 norm is at most max_norm; returns the norm before.")
-- files and the process
doc("dm.save_safetensors", "dm.save_safetensors(path, {name = Tensor}, [metadata])", "Writes tensors as a safetensors file, atomically.")
doc("dm.load_safetensors", "dm.load_safetensors(path) -> tensors, metadata", "Reads a safetensors file (no code runs).")
doc("dm.json", "dm.json", "JSON through jansson: encode, decode, null, array.")
doc("dm.json.encode", "dm.json.encode(value) -> string", "A Lua value as JSON text.")
doc("dm.json.decode", "dm.json.decode(text) -> value", "JSON text as a Lua value (null is dm.json.null).")
doc("dm.json.null", "dm.json.null", "The value JSON null decodes to and encodes from.")
doc("dm.json.array", "dm.json.array(t) -> t", "Marks a table to encode as a JSON array even when empty.")
doc("dm.yaml", "dm.yaml", "YAML through libyaml: load, load_string, null.")
doc("dm.yaml.load", "dm.yaml.load(path) -> value, lines", "A YAML file as a Lua value, with the line of each key.")
doc("dm.yaml.load_string", "dm.yaml.load_string(text, [name]) -> value, lines", "YAML text as a Lua value, with the line of each key.")
doc("dm.yaml.null", "dm.yaml.null", "The value YAML null loads as.")
doc("dm.datautil", "dm.datautil", "The data pipeline's C kernels: count, encode_lines, encode_windows, stride_windows, gather.")
doc("dm.datautil.count", "dm.datautil.count(tp, fp, fn, pred, target, pad) -> correct, total, rows", "Adds the hits and misses of predictions (ids or logits) against the non-pad targets, for accuracy and F1.")
doc("dm.datautil.encode_lines", "dm.datautil.encode_lines(samples, T) -> X, Y", "Lines mode: per sample, <sos> + ids as the input row and ids + <eos> as the target row, padded to T.")
doc("dm.datautil.stride_windows", "dm.datautil.stride_windows(ids, first, last, B, T) -> X, Y, nb", "Truncated BPTT: ids first..last as B parallel streams; batch k (rows kB+1..kB+B) holds window k of each.")
doc("dm.datautil.encode_windows", "dm.datautil.encode_windows(ids, T) -> X, Y", "Stream mode: the ids cut into windows of T+1, as (N,T) inputs and targets shifted by one.")
doc("dm.datautil.gather", "dm.datautil.gather(X, Y, index, first, count) -> x, y", "The rows index[first .. first+count-1] of X and Y as a fresh batch.")
doc("dm.clock", "dm.clock() -> seconds", "A monotonic wall clock with sub-microsecond steps.")
doc("dm.isatty", "dm.isatty([\"stdin\" | \"stdout\" | \"stderr\" | fd]) -> boolean", "Whether the stream is a terminal.")
doc("dm.term_width", "dm.term_width([fd]) -> columns or nil", "The width of the terminal on fd (default stdout), else $COLUMNS, else nil.")
doc("dm.set_num_threads", "dm.set_num_threads(n)", "Threads for every matrix product (OpenBLAS and oneDNN).")
doc("dm.get_num_threads", "dm.get_num_threads() -> n", "The thread count of the library doing the matrix products.")
doc("dm.blas_info", "dm.blas_info() -> {gemm, kernel, corename, config, num_threads}", "The library of the matrix products (oneDNN or OpenBLAS) and its kernels (e.g. avx512_core), OpenBLAS's kernel set (e.g. Haswell) and build line, and the thread count.")
doc("dm.set_gemm", "dm.set_gemm(\"openblas\" | \"dnnl\" | \"auto\")", "The library of the matrix products from now on (default: $DRLMEM_GEMM, else oneDNN where it loads).")
doc("dm.write_file", "dm.write_file(path, text)", "Replaces path with text atomically (temporary file, fsync, rename).")
doc("dm.lock_file", "dm.lock_file(path) -> lock or nil, holder_pid", "An exclusive flock on path (lock:release()); nil and the holder's pid when another process has it.")
doc("dm.pid_alive", "dm.pid_alive(pid) -> boolean", "Whether a process with this pid exists.")
doc("dm.getpid", "dm.getpid() -> pid", "The pid of this process.")
doc("dm.version", "dm.version", "The version of drlmem, a string.")
-- data parallelism over MPI (bind/dist.c, lua/drlmem/dist.lua)
doc("dm.dist", "dm.dist", "Data-parallel training over MPI: init, rank, size, allreduce, broadcast, barrier, and the training helpers.")
doc("dm.dist.available", "dm.dist.available() -> boolean", "Whether an MPI launcher (mpirun) started this process.")
doc("dm.dist.init", "dm.dist.init([{timeout = s}]) -> rank, size", "Joins the ranks (no MPI at all outside mpirun: rank 0 of 1); timeout bounds every collective.")
doc("dm.dist.initialized", "dm.dist.initialized() -> boolean", "Whether init has run and finalize has not.")
doc("dm.dist.rank", "dm.dist.rank() -> r", "This process's rank, 0 .. size-1.")
doc("dm.dist.size", "dm.dist.size() -> n", "The number of ranks (1 without mpirun).")
doc("dm.dist.allreduce", "dm.dist.allreduce(x, [op], [{bucket_bytes, scale}]) -> x", "Sum, mean, max or min over the ranks of a tensor or list of tensors (in place) or of numbers.")
doc("dm.dist.broadcast", "dm.dist.broadcast(x, [root = 0]) -> x", "Root's tensors (in place) or number, string or boolean, on every rank.")
doc("dm.dist.barrier", "dm.dist.barrier()", "Returns when every rank has called it.")
doc("dm.dist.finalize", "dm.dist.finalize()", "Ends MPI; no collective works after it.")
doc("dm.dist.shard", "dm.dist.shard(x, [y]) -> x_r, y_r", "This rank's consecutive rows of a global batch (nil when none are left).")
doc("dm.dist.target_weight", "dm.dist.target_weight(count, [loss]) -> weight, total, mean_loss", "The factor for this rank's loss gradient so averaged gradients are those of the global batch's mean loss.")
doc("dm.dist.average_gradients", "dm.dist.average_gradients(net, [{bucket_bytes}])", "Every gradient of net becomes its mean over the ranks, in buckets.")
doc("dm.dist.broadcast_parameters", "dm.dist.broadcast_parameters(net, [root = 0])", "Every rank takes root's weights.")
doc("dm.dist.row_mean", "dm.dist.row_mean(m, rows) -> mean", "The global batch's mean of a per-row mean each rank took over its rows.")
doc("dm.dist.allgather", "dm.dist.allgather(s) -> {s_0, ..., s_n-1}", "Every rank's string, in rank order, on every rank.")
doc("dm.dist.any", "dm.dist.any(flag) -> boolean", "True on every rank when flag is true on one.")
doc("dm.dist.assert_same", "dm.dist.assert_same(what, s)", "Raises on every rank unless every rank's string s equals rank 0's.")
-- the Lua half (lua/drlmem/*.lua, loaded on first use)
doc("dm.augment", "dm.augment", "Text augmentation (EDA: synonyms, insertion, swap, deletion) for scripts/augment.lua.")
doc("dm.checkgrad", "dm.checkgrad(f, x, [eps]) -> error", "Compares the gradient f returns with central differences; the largest relative error.")
doc("dm.budget", "dm.budget", "The memory a training run will take, estimated from its config, and the refusal of one that cannot fit: estimate, check, check_data.")
doc("dm.checkpoint", "dm.checkpoint", "Saving and loading models and training state as safetensors: save, load, restore_*.")
doc("dm.cli", "dm.cli", "The command line every script shares: parse{...} gives --config, --set and --help.")
doc("dm.config", "dm.config", "The config schema: load(path, overrides), defaults(), describe(cfg); errors name file, line and key.")
doc("dm.data", "dm.data", "Tokenizers, Vocab, and load(cfg) -> train/val/test splits with batches.")
doc("dm.help", "help([x])", "This help: every name of dm, or the signature and a sentence for x.")
doc("dm.log", "dm.log", "The training log and metrics.jsonl files.")
doc("dm.metrics", "dm.metrics", "Loss, perplexity, accuracy and F1: Accumulator, compute.")
doc("dm.plot", "dm.plot", "SVG figures: line_chart, bar_chart, heatmap, training_figure.")
doc("dm.progress", "dm.progress", "The progress bar of the training scripts, kept within the terminal's width.")
doc("dm.repl", "dm.repl", "The REPL's printing of values (show) and Tab completion of names (complete).")
doc("dm.tasks", "dm.tasks", "Synthetic tasks (associative recall, copy) and their answer accuracy (also of bAbI questions).")
doc("dm.babi", "dm.babi", "The bAbI question-answering format: parse, read, samples (a sample per question), generate, format, write_stories.")
doc("dm.train", "dm.train", "The model and optimizer of a run: model_config, optimizer, scheduler, criterion, clip_groups.")
doc("dm.loop", "dm.loop", "The training loop scripts/train.lua runs: setup(cfg, data), run(st, data, hooks), epoch, EarlyStopping.")
doc("dm.evaluation", "dm.evaluation", "run(net, split, cfg, opts): loss, and perplexity, accuracy and F1 with opts.metrics.")
doc("dm.resume", "dm.resume", "A run's checkpoints: save_model, save (resumable), load (checked field by field), command.")
doc("dm.inference", "dm.inference", "For scripts using a trained model: checkpoint_config, file_split, detokenize.")
doc("dm.stories", "dm.stories", "The default training text: generate{n, seed, tiny}, write(path, opts), ensure(cfg).")
doc("dm.rundir", "dm.rundir", "A run's claim on its output folders: lock, writability, stale temporaries, no overwriting.")
doc("dm.tune", "dm.tune", "Hyperparameter search for scripts/tune.lua: load_space, sample, rungs, next_job, search, table, config_yaml, figure.")

-- the most used functions of the Lua half (the others are listed by name)
doc("dm.config.load", "dm.config.load([path], [overrides]) -> cfg", "A YAML config over the defaults, then overrides ({\"key=value\", ...} or {key = value}); errors name file, line and key.")
doc("dm.config.defaults", "dm.config.defaults() -> cfg", "The defaults alone (what configs/default.yaml holds).")
doc("dm.config.describe", "dm.config.describe(cfg) -> lines", "\"key = value (source)\" lines in declaration order.")
doc("dm.config.check", "dm.config.check(key, value, where) -> value", "One value checked against the schema as a config file's is; errors start with where.")
doc("dm.tune.load_space", "dm.tune.load_space(path) -> space", "A search space file: config keys with a list of values or {range: [low, high], scale: linear|log}.")
doc("dm.tune.sample", "dm.tune.sample(space, trial, seed, sampler) -> values", "Trial's values (a map key -> value) from the seed alone; sampler random or halton.")
doc("dm.tune.search", "dm.tune.search(opts) -> records, why, job", "Successive halving (ASHA's rule, one job at a time) over opts.run(job); continues from opts.records.")
doc("dm.data.load", "dm.data.load(cfg) -> {vocab, train, val, test}", "Reads, tokenizes and splits cfg.data_path; each split has :batches(n).")
doc("dm.data.Vocab", "dm.data.Vocab(tokens) -> Vocab", "A vocabulary from its tokens in index order (a checkpoint's ck.vocab): encode, decode, itos, stoi.")
doc("dm.data.tokenizer", "dm.data.tokenizer(name) -> function(text) -> tokens", "The tokenizer called name (word, char, upstream, or a registered one).")
doc("dm.babi.parse", "dm.babi.parse(text, [where]) -> stories", "Stories of bAbI text (statements; questions with answer and supporting ids); errors read where:LINE.")
doc("dm.babi.read", "dm.babi.read(path, [max_bytes]) -> stories", "The stories of a bAbI file.")
doc("dm.babi.samples", "dm.babi.samples(stories, tokenize, T, [{context = 50, where}]) -> samples, info", "A token list per question: its story's last statements that fit T, the question up to `?`, the answer.")
doc("dm.babi.generate", "dm.babi.generate([{stories = 200, questions = 5, events = 3, seed = 0}]) -> stories", "Stories of people moving and handling objects, with answers and supporting ids, from the seed alone.")
doc("dm.babi.format", "dm.babi.format(stories) -> text", "Stories as bAbI text: 'ID sentence' lines, 'ID question \\tanswer\\tids' for questions.")
doc("dm.babi.write_stories", "dm.babi.write_stories(path, [opts]) -> stories, bytes", "Writes babi.generate(opts) to path in the bAbI format (scripts/make_data.lua --format babi).")
doc("dm.data.babi_hold_out", "dm.data.babi_hold_out(file, val_ratio) -> train, val", "sample_mode babi with test_data alone: the last stories of data_path become validation.")
doc("dm.data.babi_parts", "dm.data.babi_parts(samples, path, cfg, [seed]) -> parts, sizes", "sample_mode babi without split files: train/val/test cut between stories, not questions.")
doc("dm.checkpoint.save", "dm.checkpoint.save(path, net, [opts])", "Writes net (and opts.vocab, config, optimizer, scheduler, state) as safetensors, atomically.")
doc("dm.checkpoint.load", "dm.checkpoint.load(path) -> ck", "Reads a checkpoint: ck.net, ck.vocab, ck.config, ck.train_config, ck.state, ck.tensors.")
doc("dm.metrics.compute", "dm.metrics.compute(pred, target, [opts]) -> metrics", "{accuracy, f1_weighted, f1_macro, n} of predictions (ids or logits) against the non-pad targets.")

-- The entry explaining a userdata, by its metatable's __name.
help.objects = {
  ["drlmem.Tensor"] = "dm.Tensor",
  ["drlmem.Memory"] = "dm.Memory",
  ["drlmem.Controller"] = "dm.Controller",
  ["drlmem.Generator"] = "dm.Generator",
  ["drlmem.nn.Embedding"] = "dm.nn.Embedding",
  ["drlmem.nn.Linear"] = "dm.nn.Linear",
  ["drlmem.nn.GELU"] = "dm.nn.GELU",
  ["drlmem.nn.Dropout"] = "dm.nn.Dropout",
  ["drlmem.nn.GRU"] = "dm.nn.GRU",
  ["drlmem.nn.LSTM"] = "dm.nn.LSTM",
  ["drlmem.Optimizer"] = "dm.optim",
  ["drlmem.Config"] = "dm.config",
}

-- The value a documented name stands for ("dm.nn.Linear", "Memory:read"
-- has none: methods are found through help.methods_of).
local function resolve(name)
  local path = name:match("^dm%.(.*)$")
  if not path then return nil end
  local v = dm
  for part in path:gmatch("[^.]+") do
    if type(v) ~= "table" then return nil end
    local ok, x = pcall(function() return v[part] end)
    if not ok then return nil end
    v = x
  end
  return v
end
help.resolve = resolve

-- The method table of a metatable: its __index table, its `methods`, or
-- the table a C __index reads from (upvalue 1), or nil.
local function methods_of_mt(mt)
  if type(mt) ~= "table" then return nil end
  if type(mt.__index) == "table" then return mt.__index end
  if type(mt.methods) == "table" then return mt.methods end
  if type(mt.__index) == "function" and debug and debug.getupvalue then
    local _, up = debug.getupvalue(mt.__index, 1)
    if type(up) == "table" then return up end
  end
  return nil
end

-- The metatable registered under a userdata class's __name
-- (luaL_newmetatable keeps it in the registry), or nil.
local function class_mt(tname)
  local reg = debug and debug.getregistry and debug.getregistry()
  return type(reg) == "table" and type(reg[tname]) == "table" and reg[tname] or nil
end

-- The __name a documented class stands for ("dm.Memory" -> "drlmem.Memory").
local function tname_of_key(key)
  for tname, k in pairs(help.objects) do
    if k == key then return tname end
  end
  return nil
end

--- The method table of an object, or of a class given by its doc key
-- ("dm.Memory"), or nil.
function help.methods_of(v)
  if type(v) == "string" then
    local tname = tname_of_key(v)
    return tname and methods_of_mt(class_mt(tname)) or nil
  end
  if type(v) == "userdata" then return methods_of_mt(getmetatable(v)) end
  return nil
end

-- The class name of a __name: "drlmem.nn.Linear" -> "Linear".
local function class_of(name) return name and name:match("([%w_]+)$") end

--- The documentation key for x (a name, a documented value, an object or
-- a method), or nil.
function help.key(x)
  if type(x) == "string" then
    if D[x] then return x end
    if D["dm." .. x] then return "dm." .. x end
    return nil
  end
  if x == nil or x == dm then return nil end
  for name in pairs(D) do
    if name:sub(1, 3) == "dm." and rawequal(resolve(name), x) then return name end
  end
  local mt = getmetatable(x)
  local tname = type(mt) == "table" and rawget(mt, "__name")
  if type(tname) == "string" and help.objects[tname] then return help.objects[tname] end
  if type(x) == "function" then
    -- a method of one of the classes
    for tname, key in pairs(help.objects) do
      local methods = methods_of_mt(class_mt(tname))
      local cls = class_of(tname)
      for m, f in pairs(methods or {}) do
        if rawequal(f, x) then return D[cls .. ":" .. m] and (cls .. ":" .. m) or (key .. ":" .. m) end
      end
    end
  end
  return nil
end

local function names_sorted(t)
  local out = {}
  for k in pairs(t) do if type(k) == "string" then out[#out + 1] = k end end
  table.sort(out)
  return out
end

--- The width help() fits its list into: the terminal's (or $COLUMNS),
-- else 80.
function help.columns()
  local w = dm.term_width and dm.term_width("stdout")
  return (w and w >= 40) and w or 80
end

--- The help text for x (see the file's head), as one string; help.text()
-- with no argument (not even nil) is the list of every name.
function help.text(...)
  local x = ...
  if select("#", ...) == 0 or x == dm then
    -- one line a name, its sentence cut to the terminal's width
    local cols = help.columns()
    local lines = { "drlmem " .. tostring(dm.version) .. ": help(x) explains x, e.g. help(dm.Memory)" }
    local width, top = 0, {}
    for name in pairs(D) do
      if name:match("^dm%.[%w_]+$") then top[#top + 1] = name; width = math.max(width, #name) end
    end
    table.sort(top, function(a, b) return a:lower() < b:lower() end)
    for _, name in ipairs(top) do
      local line = string.format("  %-" .. width .. "s  %s", name, D[name][2])
      if #line > cols - 1 then line = line:sub(1, cols - 4) .. "..." end
      lines[#lines + 1] = line
    end
    return table.concat(lines, "\n")
  end
  local key = help.key(x)
  if not key then
    local what = type(x) == "string" and string.format("'%s'", x) or tostring(x)
    return string.format("no help for %s; help() lists what dm offers", what)
  end
  local lines = { D[key] and (D[key][1] .. "\n  " .. D[key][2]) or (key .. "\n  a method; help(" .. key:match("^[^:]+") .. ") lists them") }
  local v = type(x) == "string" and resolve(key) or x
  -- the names inside a module table, the methods of a class or an object
  local inner = {}
  if type(v) == "table" and v ~= dm.Tensor and getmetatable(v) == nil then
    for _, k in ipairs(names_sorted(v)) do
      local full = key .. "." .. k
      inner[#inner + 1] = D[full] and string.format("  %-28s %s", k, D[full][2]) or ("  " .. k)
    end
    if #inner > 0 then table.insert(inner, 1, "fields:") end
  else
    local methods = type(v) == "userdata" and help.methods_of(v) or help.methods_of(key)
    if type(methods) == "table" then
      local cls = class_of(key)
      local ms = {}
      for _, k in ipairs(names_sorted(methods)) do
        if D[cls .. ":" .. k] then
          inner[#inner + 1] = string.format("  %-28s %s", D[cls .. ":" .. k][1], D[cls .. ":" .. k][2])
        else
          ms[#ms + 1] = k
        end
      end
      if #ms > 0 then inner[#inner + 1] = "  " .. table.concat(ms, " ") end
      table.insert(inner, 1, "methods:")
    end
  end
  if #inner > 1 then lines[#lines + 1] = table.concat(inner, "\n") end
  return table.concat(lines, "\n")
end

--- help([x]): prints help.text(x).
function help.help(...)
  print(help.text(...))
end

return setmetatable(help, { __call = function(_, ...) return help.help(...) end })
