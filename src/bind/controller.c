/* controller.c (bind): dm.Controller, the Lua face of the DRLMemNet model
 * (core/controller.h).
 *
 *   net = dm.Controller(cfg [, generator])
 *     cfg: vocab_size, embedding_dim, memory_size, hidden_size (required),
 *     memory_embedding_dim (default embedding_dim), num_layers (2), dropout
 *     (0.3), output_activation ("gelu" | "none"), use_memory (true; false
 *     is the ablation's GRU without memory: the GRU reads the query), the
 *     write-policy keys (core/controller.h); an unknown key is an
 *     error. Weights are drawn from generator (a dm.Generator, kept alive
 *     by the net and also used for dropout), else from the global generator.
 *   net:forward(tokens [, out]) int32 (B,T) -> logits (B,T,V), a fresh copy,
 *                             or copied into `out` (float32 (B,T,V),
 *                             contiguous), which is returned; out = false:
 *                             nothing returned, no copy (then net:loss,
 *                             net:backward(), net:logits())
 *   net:backward(dlogits)     float32 (B,T,V); adds into the gradients
 *   net:zero_grad(), net:train(), net:eval(), net:training() -> bool
 *   net:write_memory(s)       the post-step memory write (no gradient)
 *   net:set_dropout_mask(m)   {0,1} float32 (B,T,H) for the next training
 *                             forward (parity tests); nil clears it
 *   net:set_state(h [, c])    the cell's initial state of every following
 *                             forward, float32 (num_layers,B,H) (c: the
 *                             LSTM's cell state, zeros when left out); a
 *                             constant (no gradient): carrying the last
 *                             window's is truncated BPTT; nil clears it
 *   net:final_state()         the last forward's h_n [, c_n] (copies), or nil
 *   net:parameters()          ordered list {name=, value=view, grad=view|nil,
 *                             group="policy"|nil} (usage_counts excluded: a
 *                             buffer, as in torch; group: clipped on its own)
 *   net:state_dict()          map name -> COPY, plus the ordered name list
 *   net:load_state_dict(map)  copies in after checking every name and shape
 *   net:config(), net:memory_usage(), net:last_query(),
 *   net:last_attention(), net:last_slots(), net:param(name),
 *   net:num_parameters(), net:set_generator(gen | nil)
 *
 * Views (parameters(), param()) point into the controller's arenas, which
 * never move, and keep the controller alive. The controller has __gc but
 * deliberately no __close: closing it would free arenas under live views
 * (as dm.Memory does, for the same reason). */
#include "bind/bind.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/controller.h"
#include "core/dist.h"

#define DM_CONTROLLER_MT "drlmem.Controller"

typedef struct lctrl {
    dm_controller c;
    int alive;
} lctrl;

static lctrl *check_ctrl(lua_State *L, const char *fn)
{
    lctrl *u = (lctrl *)luaL_testudata(L, 1, DM_CONTROLLER_MT);
    if (!u) {
        const char *dot = strchr(fn, '.');
        dm_bind_errorf(L, "%s: expected a Controller as self (call it as net:%s(...))", fn,
                       dot ? dot + 1 : fn);
    }
    if (!u->alive) dm_bind_errorf(L, "%s: the controller has been freed", fn);
    return u;
}

/* ---- construction: the config, read from the core's field table -------------- */

static void *field_ptr(dm_controller_config *cfg, const dm_config_field *f)
{
    return (char *)cfg + f->offset;
}

/* The choices of an enum or part field joined by sep ("a, b" or "a|b"),
 * an enum's old name last. */
static const char *field_choices(const dm_config_field *f, const char *sep, char *buf, size_t n)
{
    char tmp[160];
    if (f->type == DM_FIELD_PART)
        dm_part_kinds((dm_part_role)f->role, tmp, sizeof tmp); /* "a, b" */
    else
        snprintf(tmp, sizeof tmp, "%s%s%s", f->check, f->alias ? "|" : "", f->alias ? f->alias : "");
    size_t used = 0;
    buf[0] = '\0';
    for (char *tok = strtok(tmp, "|, "); tok; tok = strtok(NULL, "|, ")) {
        int k = snprintf(buf + used, n > used ? n - used : 0, "%s%s", used ? sep : "", tok);
        if (k > 0) used += (size_t)k;
    }
    return buf;
}

/* The index of v among f's choices (its alias: 0), or -1. */
static int enum_index(const dm_config_field *f, const char *v)
{
    if (f->alias && strcmp(v, f->alias) == 0) return 0;
    int i = 0;
    for (const char *c = f->check; *c; i++) {
        size_t len = strcspn(c, "|");
        if (strlen(v) == len && strncmp(c, v, len) == 0) return i;
        c += len + (c[len] == '|');
    }
    return -1;
}

/* The i-th choice of an enum field into buf. */
static const char *enum_name(const dm_config_field *f, int i, char *buf, size_t n)
{
    const char *c = f->check;
    for (; i > 0 && *c; i--) c += strcspn(c, "|") + (c[strcspn(c, "|")] == '|');
    snprintf(buf, n, "%.*s", (int)strcspn(c, "|"), c);
    return buf;
}

/* Fills cfg from the table at idx: every key must be a field of the core's
 * table; absent ones keep dm_controller_config_default's value. */
static void read_config(lua_State *L, int idx, const char *fn, dm_controller_config *cfg)
{
    size_t nf;
    const dm_config_field *fs = dm_controller_fields(&nf);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        int known = 0;
        for (size_t i = 0; k && i < nf; i++) known |= strcmp(k, fs[i].name) == 0;
        if (!known) {
            luaL_Buffer b;
            luaL_buffinit(L, &b);
            for (size_t i = 0; i < nf; i++) {
                if (i) luaL_addstring(&b, ", ");
                luaL_addstring(&b, fs[i].name);
            }
            luaL_pushresult(&b);
            dm_bind_errorf(L, "%s: unknown config field '%s' (known: %s)", fn,
                           k ? k : luaL_typename(L, -2), lua_tostring(L, -1));
        }
    }
    *cfg = dm_controller_config_default(0);
    for (size_t i = 0; i < nf; i++) {
        const dm_config_field *f = &fs[i];
        void *dst = field_ptr(cfg, f);
        if (f->flags & DM_FIELD_ZERO_IS_NULL) *(int64_t *)dst = 0; /* absent: derived by the core */
        char buf[160];
        lua_getfield(L, idx, f->name);
        int t = lua_type(L, -1);
        if (t == LUA_TNIL) {
            if (f->flags & DM_FIELD_REQUIRED)
                dm_bind_errorf(L, "%s: config field %s is missing", fn, f->name);
            lua_pop(L, 1);
            continue;
        }
        const char *shown = t == LUA_TNUMBER || t == LUA_TSTRING ? lua_tostring(L, -1)
                                                                 : luaL_typename(L, -1);
        switch (f->type) {
        case DM_FIELD_INT: {
            int ok = 0;
            lua_Integer v = t == LUA_TNUMBER ? lua_tointegerx(L, -1, &ok) : 0;
            if (!ok) dm_bind_errorf(L, "%s: config field %s must be an integer, got %s", fn, f->name, shown);
            if (v < 1)
                dm_bind_errorf(L, "%s: config field %s must be >= 1, got %" PRId64, fn, f->name,
                               (int64_t)v);
            *(int64_t *)dst = (int64_t)v;
            break;
        }
        case DM_FIELD_DOUBLE:
        case DM_FIELD_FLOAT:
            if (t != LUA_TNUMBER)
                dm_bind_errorf(L, "%s: config field %s must be a number, got %s", fn, f->name,
                               luaL_typename(L, -1));
            if (f->type == DM_FIELD_DOUBLE)
                *(double *)dst = lua_tonumber(L, -1);
            else
                *(float *)dst = (float)lua_tonumber(L, -1);
            break;
        case DM_FIELD_BOOL:
            if (t != LUA_TBOOLEAN)
                dm_bind_errorf(L, "%s: config field %s must be a boolean, got %s", fn, f->name, shown);
            *(int *)dst = lua_toboolean(L, -1);
            break;
        case DM_FIELD_ENUM: {
            int v = t == LUA_TSTRING ? enum_index(f, lua_tostring(L, -1)) : -1;
            if (v < 0)
                dm_bind_errorf(L, "%s: config field %s must be one of %s, got %s", fn, f->name,
                               field_choices(f, ", ", buf, sizeof buf), shown);
            *(int *)dst = v;
            break;
        }
        case DM_FIELD_PART:
            if (t != LUA_TSTRING || !dm_part_find(lua_tostring(L, -1), (dm_part_role)f->role))
                dm_bind_errorf(L, "%s: config field %s must be one of %s, got %s", fn, f->name,
                               field_choices(f, ", ", buf, sizeof buf), shown);
            snprintf((char *)dst, DM_KIND_NAME_MAX, "%s", lua_tostring(L, -1));
            break;
        }
        lua_pop(L, 1);
    }
}

/* Pushes the value of field f of cfg. */
static void push_field(lua_State *L, const dm_controller_config *cfg, const dm_config_field *f)
{
    const void *src = (const char *)cfg + f->offset;
    char buf[64];
    switch (f->type) {
    case DM_FIELD_INT: lua_pushinteger(L, (lua_Integer) * (const int64_t *)src); break;
    case DM_FIELD_DOUBLE: lua_pushnumber(L, *(const double *)src); break;
    case DM_FIELD_FLOAT: {
        /* The shortest decimal that reads back as the float, so that 0.95
         * stays 0.95 and not 0.949999988. */
        float v = *(const float *)src;
        for (int prec = 6; prec <= 9; prec++) {
            snprintf(buf, sizeof buf, "%.*g", prec, (double)v);
            if ((float)strtod(buf, NULL) == v) break;
        }
        lua_pushnumber(L, strtod(buf, NULL));
        break;
    }
    case DM_FIELD_BOOL: lua_pushboolean(L, *(const int *)src); break;
    case DM_FIELD_ENUM: lua_pushstring(L, enum_name(f, *(const int *)src, buf, sizeof buf)); break;
    case DM_FIELD_PART: lua_pushstring(L, (const char *)src); break;
    }
}

static int l_controller_new(lua_State *L)
{
    if (!lua_istable(L, 1))
        dm_bind_errorf(L, "Controller: argument 1 (config): expected a table, got %s",
                       luaL_typename(L, 1));
    dm_rng *gen = NULL;
    if (!lua_isnoneornil(L, 2)) {
        gen = dm_bind_testgenerator(L, 2);
        if (!gen)
            dm_bind_errorf(L, "Controller: argument 2 (generator): expected Generator, got %s",
                           luaL_typename(L, 2));
    }
    dm_controller_config cfg;
    read_config(L, 1, "Controller", &cfg);
    dm_error err;
    lctrl *u = (lctrl *)lua_newuserdatauv(L, sizeof(lctrl), 1);
    memset(u, 0, sizeof *u);
    luaL_setmetatable(L, DM_CONTROLLER_MT);
    if (dm_controller_create(&u->c, &cfg, gen, &err) != 0) dm_bind_error(L, &err);
    u->alive = 1;
    if (gen) {
        dm_controller_set_rng(&u->c, gen);
        lua_pushvalue(L, 2);
        lua_setiuservalue(L, -2, 1);
    }
    return 1;
}

/* dm.controller_fields() -> list of {name=, kind=, default=, check=,
 * doc=, required=, derived=, policy=, if_changed=}: the model config's keys as the core
 * declares them, for the Lua schema. kind is int|number|bool|enum; an
 * enum's check lists its choices "a|b" (an old name last). default is
 * dm_controller_config_default's, nil for vocab_size (the data's) and
 * memory_embedding_dim (= embedding_dim); required: dm.Controller{} must
 * be given the key. */
static int l_controller_fields(lua_State *L)
{
    size_t nf;
    const dm_config_field *fs = dm_controller_fields(&nf);
    dm_controller_config def = dm_controller_config_default(0);
    lua_createtable(L, (int)nf, 0);
    for (size_t i = 0; i < nf; i++) {
        const dm_config_field *f = &fs[i];
        char buf[160];
        lua_createtable(L, 0, 8);
        lua_pushstring(L, f->name);
        lua_setfield(L, -2, "name");
        static const char *const kinds[] = {"int", "number", "number", "bool", "enum", "enum"};
        lua_pushstring(L, kinds[f->type]);
        lua_setfield(L, -2, "kind");
        if (!(f->flags & (DM_FIELD_DERIVED | DM_FIELD_ZERO_IS_NULL))) {
            push_field(L, &def, f);
            lua_setfield(L, -2, "default");
        }
        if (f->type == DM_FIELD_ENUM || f->type == DM_FIELD_PART) {
            lua_pushstring(L, field_choices(f, "|", buf, sizeof buf));
        } else if (f->check) {
            lua_pushstring(L, f->check);
        } else {
            lua_pushnil(L);
        }
        lua_setfield(L, -2, "check");
        lua_pushstring(L, f->doc);
        lua_setfield(L, -2, "doc");
        lua_pushboolean(L, (f->flags & DM_FIELD_REQUIRED) != 0);
        lua_setfield(L, -2, "required");
        lua_pushboolean(L, (f->flags & DM_FIELD_DERIVED) != 0);
        lua_setfield(L, -2, "derived");
        lua_pushboolean(L, (f->flags & DM_FIELD_POLICY) != 0);
        lua_setfield(L, -2, "policy");
        lua_pushboolean(L, (f->flags & DM_FIELD_IF_CHANGED) != 0);
        lua_setfield(L, -2, "if_changed");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

/* Pushes {name=, shape={...}, numel=} rows of a size table and its bytes. */
static size_t push_table(lua_State *L, const dm_arena *a)
{
    lua_createtable(L, a->n, 0);
    for (int i = 0; i < a->n; i++) {
        const dm_arena_entry *e = &a->entries[i];
        lua_createtable(L, 0, 3);
        lua_pushstring(L, e->name);
        lua_setfield(L, -2, "name");
        lua_createtable(L, e->ndim, 0);
        for (int d = 0; d < e->ndim; d++) {
            lua_pushinteger(L, (lua_Integer)e->shape[d]);
            lua_rawseti(L, -2, d + 1);
        }
        lua_setfield(L, -2, "shape");
        lua_pushinteger(L, (lua_Integer)e->numel);
        lua_setfield(L, -2, "numel");
        lua_rawseti(L, -2, i + 1);
    }
    return a->numel * sizeof(float);
}

/* dm.controller_sizes(cfg, B, T) -> {params = rows, acts = rows,
 * param_bytes =, grad_bytes =, act_bytes =, total_bytes =}: what
 * dm.Controller(cfg) and a forward of a (B,T) batch would allocate (the
 * arenas, padding included; optimizer moments not counted), computed
 * without allocating them. */
static int l_controller_sizes(lua_State *L)
{
    const char *fn = "controller_sizes";
    if (!lua_istable(L, 1))
        dm_bind_errorf(L, "%s: argument 1 (config): expected a table, got %s", fn, luaL_typename(L, 1));
    int64_t B = dm_bind_check_int(L, 2, fn, "B"), T = dm_bind_check_int(L, 3, fn, "T");
    if (B < 1 || T < 1) dm_bind_errorf(L, "%s: B and T must be >= 1, got %" PRId64 " x %" PRId64, fn, B, T);
    dm_controller_config cfg;
    read_config(L, 1, fn, &cfg);
    dm_arena p, a;
    dm_arena_init(&p);
    dm_arena_init(&a);
    dm_error err;
    if (dm_controller_sizes(&cfg, (size_t)B, (size_t)T, &p, &a, &err) != 0) {
        dm_arena_free(&p);
        dm_arena_free(&a);
        dm_bind_error(L, &err);
    }
    lua_createtable(L, 0, 6);
    size_t pb = push_table(L, &p);
    lua_setfield(L, -2, "params");
    size_t ab = push_table(L, &a);
    lua_setfield(L, -2, "acts");
    dm_arena_free(&p);
    dm_arena_free(&a);
    lua_pushinteger(L, (lua_Integer)pb);
    lua_setfield(L, -2, "param_bytes");
    lua_pushinteger(L, (lua_Integer)pb);
    lua_setfield(L, -2, "grad_bytes");
    lua_pushinteger(L, (lua_Integer)ab);
    lua_setfield(L, -2, "act_bytes");
    lua_pushinteger(L, (lua_Integer)(2 * pb + ab));
    lua_setfield(L, -2, "total_bytes");
    return 1;
}

static int c_gc(lua_State *L)
{
    lctrl *u = (lctrl *)luaL_checkudata(L, 1, DM_CONTROLLER_MT);
    if (u->alive) dm_controller_free(&u->c);
    u->alive = 0;
    return 0;
}

static int c_tostring(lua_State *L)
{
    lctrl *u = (lctrl *)luaL_checkudata(L, 1, DM_CONTROLLER_MT);
    if (!u->alive) {
        lua_pushliteral(L, "Controller(freed)");
        return 1;
    }
    const dm_controller *c = &u->c;
    const dm_model_dims d = dm_controller_dims(c);
    char buf[256];
    snprintf(buf, sizeof buf, "Controller(vocab=%zu, emb=%zu, mem=%zux%zu, hidden=%zux%zu, params=%zu)",
             d.V, d.E, d.M, d.D, d.H, d.L, dm_controller_param_count(c));
    lua_pushstring(L, buf);
    return 1;
}

/* ---- forward / backward ---------------------------------------------------- */

/* Pushes a contiguous version of the tensor at idx (itself when it is). */
static dm_tensor *push_contiguous(lua_State *L, int idx, dm_tensor *t)
{
    if (dm_tensor_is_contiguous(t)) {
        lua_pushvalue(L, idx);
        return t;
    }
    dm_error err;
    dm_tensor *c = dm_bind_newempty(L);
    if (dm_tensor_contiguous(c, t, &err) != 0) dm_bind_error(L, &err);
    return c;
}

static int c_forward(lua_State *L)
{
    const char *fn = "Controller.forward";
    lctrl *u = check_ctrl(L, fn);
    dm_tensor *t = dm_bind_checktensor(L, 2, fn, "tokens");
    char sb[96];
    if (t->dtype != DM_I32)
        dm_bind_errorf(L, "%s: tokens must be an int32 tensor of token ids, got %s (convert "
                          "with :int())",
                       fn, dm_dtype_name(t->dtype));
    if (t->ndim != 2 || t->shape[0] < 1 || t->shape[1] < 1)
        dm_bind_errorf(L, "%s: tokens must have shape (B,T) with B, T >= 1, got %s", fn,
                       dm_tensor_shape_str(t, sb, sizeof sb));
    size_t B = (size_t)t->shape[0], T = (size_t)t->shape[1];
    lua_settop(L, 3); /* the optional out stays at 3, below what is pushed next */
    dm_tensor *tc = push_contiguous(L, 2, t);
    dm_error err;
    if (dm_controller_forward(&u->c, dm_tensor_i32(tc), B, T, &err) != 0) dm_bind_error(L, &err);
    const size_t V = dm_controller_dims(&u->c).V;
    int64_t shape[3] = {(int64_t)B, (int64_t)T, (int64_t)V};
    dm_tensor *out;
    /* false: the logits stay in the core (net:loss, net:logits). */
    if (lua_type(L, 3) == LUA_TBOOLEAN && !lua_toboolean(L, 3)) return 0;
    if (!lua_isnil(L, 3)) {
        /* A caller-owned buffer: a loop reuses it instead of allocating
         * B*T*V floats per call (fresh pages are zero-filled by the kernel
         * on first touch, and Lua's GC does not see their size). */
        out = dm_bind_checkf32(L, 3, fn, "out");
        if (out->ndim != 3 || out->shape[0] != shape[0] || out->shape[1] != shape[1] ||
            out->shape[2] != shape[2] || !dm_tensor_is_contiguous(out))
            dm_bind_errorf(L, "%s: out must be a contiguous float32 tensor of shape %zux%zux%zu, "
                              "got %s%s",
                           fn, B, T, V, dm_tensor_shape_str(out, sb, sizeof sb),
                           dm_tensor_is_contiguous(out) ? "" : " (not contiguous)");
        lua_pushvalue(L, 3);
    } else {
        out = dm_bind_newtensor_named(L, DM_F32, 3, shape, fn);
    }
    memcpy(dm_tensor_f32(out), dm_controller_logits(&u->c), B * T * V * sizeof(float));
    return 1;
}

/* net:backward([dlogits]): with dlogits (float32 (B,T,V)), its gradient;
 * without, the gradient the last net:loss kept (no copy through Lua). */
static int c_backward(lua_State *L)
{
    const char *fn = "Controller.backward";
    lctrl *u = check_ctrl(L, fn);
    dm_error err;
    size_t B, T;
    if (dm_controller_last_batch(&u->c, &B, &T) != 0)
        dm_bind_errorf(L, "%s: no forward to differentiate (call net:forward first)", fn);
    if (lua_isnoneornil(L, 2)) {
        if (dm_controller_backward_loss(&u->c, &err) != 0) dm_bind_error(L, &err);
        return 0;
    }
    dm_tensor *d = dm_bind_checkf32(L, 2, fn, "dlogits");
    const size_t V = dm_controller_dims(&u->c).V;
    if (d->ndim != 3 || d->shape[0] != (int64_t)B || d->shape[1] != (int64_t)T ||
        d->shape[2] != (int64_t)V) {
        char sb[96];
        dm_bind_errorf(L, "%s: dlogits has shape %s, expected %zux%zux%zu (the last forward's "
                          "B x T x V)",
                       fn, dm_tensor_shape_str(d, sb, sizeof sb), B, T, V);
    }
    dm_tensor *dc = push_contiguous(L, 2, d);
    if (dm_controller_backward(&u->c, dm_tensor_f32(dc), B, T, &err) != 0) dm_bind_error(L, &err);
    return 0;
}

/* The targets of the last forward (argument 2): an int32 (B,T) tensor of
 * that forward's shape, and an ignore_index within int32. Returns a
 * contiguous copy or the tensor itself, pushed onto the stack. */
static dm_tensor *check_targets(lua_State *L, lctrl *u, const char *fn, dm_tensor *y,
                                lua_Integer ig)
{
    size_t B, T;
    if (dm_controller_last_batch(&u->c, &B, &T) != 0)
        dm_bind_errorf(L, "%s: no forward (call net:forward first)", fn);
    char sb[96];
    if (y->dtype != DM_I32 || y->ndim != 2 || y->shape[0] != (int64_t)B || y->shape[1] != (int64_t)T)
        dm_bind_errorf(L, "%s: targets must be an int32 tensor of shape %zux%zu (the last "
                          "forward's), got %s %s",
                       fn, B, T, dm_dtype_name(y->dtype), dm_tensor_shape_str(y, sb, sizeof sb));
    if (ig < INT32_MIN || ig > INT32_MAX)
        dm_bind_errorf(L, "%s: ignore_index %lld is out of the int32 range", fn, (long long)ig);
    dm_tensor *yc = push_contiguous(L, 2, y);
    return yc;
}

/* net:loss(targets [, {ignore_index = -1, scale = 1, grad = true}]) ->
 * loss, count: the cross-entropy of the last forward's logits, computed
 * where they live; its gradient (times scale) waits there for
 * net:backward(). grad = false (evaluation): no gradient. */
static int c_loss(lua_State *L)
{
    const char *fn = "Controller.loss";
    lctrl *u = check_ctrl(L, fn);
    dm_tensor *y = dm_bind_checktensor(L, 2, fn, "targets");
    dm_bind_check_options(L, 3, fn, (const char *const[]){"ignore_index", "scale", "grad", NULL});
    lua_Integer ig = dm_bind_opt_int(L, 3, fn, "ignore_index", -1, 0);
    double scale = dm_bind_opt_number(L, 3, fn, "scale", 1.0);
    int want_grad = dm_bind_opt_bool(L, 3, fn, "grad", 1);
    dm_tensor *yc = check_targets(L, u, fn, y, ig);
    double loss;
    size_t count;
    dm_error err;
    if (dm_controller_loss(&u->c, dm_tensor_i32(yc), (int32_t)ig, (float)scale, want_grad, &loss,
                           &count, &err) != 0)
        dm_bind_error(L, &err);
    lua_pushnumber(L, loss);
    lua_pushinteger(L, (lua_Integer)count);
    return 2;
}

/* net:logits() -> a float32 (B,T,V) VIEW of the last forward's logits (no
 * copy; the next forward overwrites it), or nil before a forward. */
static int c_logits(lua_State *L)
{
    lctrl *u = check_ctrl(L, "Controller.logits");
    size_t B, T;
    if (dm_controller_last_batch(&u->c, &B, &T) != 0) {
        lua_pushnil(L);
        return 1;
    }
    /* A later, larger batch regrows the arena: keep the viewed block. */
    dm_controller_pin_acts(&u->c);
    int64_t shape[3] = {(int64_t)B, (int64_t)T, (int64_t)dm_controller_dims(&u->c).V};
    dm_bind_pushview(L, (float *)dm_controller_logits(&u->c), 3, shape, 1);
    return 1;
}

static int c_zero_grad(lua_State *L)
{
    dm_controller_zero_grad(&check_ctrl(L, "Controller.zero_grad")->c);
    return 0;
}

static int c_train(lua_State *L)
{
    lctrl *u = check_ctrl(L, "Controller.train");
    if (lua_isnoneornil(L, 2) || lua_toboolean(L, 2))
        dm_controller_train(&u->c);
    else
        dm_controller_eval(&u->c);
    lua_settop(L, 1);
    return 1;
}

static int c_eval(lua_State *L)
{
    dm_controller_eval(&check_ctrl(L, "Controller.eval")->c);
    lua_settop(L, 1);
    return 1;
}

static int c_training(lua_State *L)
{
    lua_pushboolean(L, dm_controller_is_training(&check_ctrl(L, "Controller.training")->c));
    return 1;
}

static int c_write_memory(lua_State *L)
{
    const char *fn = "Controller.write_memory";
    lctrl *u = check_ctrl(L, fn);
    if (lua_type(L, 2) != LUA_TNUMBER)
        dm_bind_errorf(L, "%s: argument strength: expected a number, got %s", fn, luaL_typename(L, 2));
    int empty = 0;
    if (!lua_isnoneornil(L, 3)) {
        dm_bind_check_options(L, 3, fn, (const char *const[]){"empty", NULL});
        lua_getfield(L, 3, "empty");
        empty = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    dm_error err;
    float s = (float)lua_tonumber(L, 2);
    if ((empty ? dm_controller_write_memory_empty(&u->c, s, &err)
               : dm_controller_write_memory(&u->c, s, &err)) != 0)
        dm_bind_error(L, &err);
    return 0;
}

/* net:set_reduce(on): on true, the memory write's means and the reinforce
 * policy's statistics are summed over the dm.dist ranks (training across
 * processes); false or nil: this process alone. */
static int c_set_reduce(lua_State *L)
{
    lctrl *u = check_ctrl(L, "Controller.set_reduce");
    dm_controller_set_reduce(&u->c, lua_toboolean(L, 2) ? dm_dist_reduce_sum : NULL, NULL);
    return 0;
}

static int c_set_dropout_mask(lua_State *L)
{
    const char *fn = "Controller.set_dropout_mask";
    lctrl *u = check_ctrl(L, fn);
    dm_error err;
    if (lua_isnoneornil(L, 2)) {
        dm_controller_set_dropout_mask(&u->c, NULL, 0, 0, &err);
        return 0;
    }
    dm_tensor *m = dm_bind_checkf32(L, 2, fn, "mask");
    const size_t H = dm_controller_dims(&u->c).H;
    if (m->ndim != 3 || m->shape[0] < 1 || m->shape[1] < 1 || m->shape[2] != (int64_t)H) {
        char sb[96];
        dm_bind_errorf(L, "%s: mask must have shape (B,T,%zu), got %s", fn, H,
                       dm_tensor_shape_str(m, sb, sizeof sb));
    }
    dm_tensor *mc = push_contiguous(L, 2, m);
    if (dm_controller_set_dropout_mask(&u->c, dm_tensor_f32(mc), (size_t)m->shape[0],
                                       (size_t)m->shape[1], &err) != 0)
        dm_bind_error(L, &err);
    return 0;
}

/* ---- the recurrent state (truncated BPTT) ------------------------------------ */

/* Checks that idx holds a float32 (L,B,H) state of the net; returns its B. */
static size_t check_state_tensor(lua_State *L, int idx, lctrl *u, const char *fn, const char *arg,
                                 size_t want_B)
{
    dm_tensor *t = dm_bind_checkf32(L, idx, fn, arg);
    const dm_model_dims d = dm_controller_dims(&u->c);
    if (t->ndim != 3 || t->shape[0] != (int64_t)d.L || t->shape[1] < 1 ||
        t->shape[2] != (int64_t)d.H || (want_B && t->shape[1] != (int64_t)want_B)) {
        char sb[96], bb[32] = "B";
        if (want_B) snprintf(bb, sizeof bb, "%zu", want_B);
        dm_bind_errorf(L, "%s: %s must have shape (num_layers=%zu,%s,hidden_size=%zu), got %s", fn,
                       arg, d.L, bb, d.H, dm_tensor_shape_str(t, sb, sizeof sb));
    }
    return (size_t)t->shape[1];
}

/* net:set_state(h [, c]) | net:set_state(nil) */
static int c_set_state(lua_State *L)
{
    const char *fn = "Controller.set_state";
    lctrl *u = check_ctrl(L, fn);
    dm_error err;
    if (lua_isnoneornil(L, 2)) {
        dm_controller_set_state(&u->c, NULL, NULL, 0, &err);
        return 0;
    }
    const size_t B = check_state_tensor(L, 2, u, fn, "h", 0);
    const int has_c = !lua_isnoneornil(L, 3);
    if (has_c && !dm_controller_has_cell_state(&u->c))
        dm_bind_errorf(L, "%s: c is the LSTM's cell state, and this net's cell is %s", fn,
                       dm_controller_get_config(&u->c)->cell);
    if (has_c) check_state_tensor(L, 3, u, fn, "c", B);
    dm_tensor *h = push_contiguous(L, 2, dm_bind_checkf32(L, 2, fn, "h"));
    dm_tensor *cs = has_c ? push_contiguous(L, 3, dm_bind_checkf32(L, 3, fn, "c")) : NULL;
    if (dm_controller_set_state(&u->c, dm_tensor_f32(h), cs ? dm_tensor_f32(cs) : NULL, B, &err) != 0)
        dm_bind_error(L, &err);
    return 0;
}

/* net:final_state() -> h (L,B,H) [, c (L,B,H) for an LSTM], copies; nil
 * before any forward. */
static int c_final_state(lua_State *L)
{
    const char *fn = "Controller.final_state";
    lctrl *u = check_ctrl(L, fn);
    size_t B, T;
    if (dm_controller_last_batch(&u->c, &B, &T) != 0) {
        lua_pushnil(L);
        return 1;
    }
    const dm_model_dims d = dm_controller_dims(&u->c);
    int64_t s[3] = {(int64_t)d.L, (int64_t)B, (int64_t)d.H};
    dm_tensor *h = dm_bind_newtensor_named(L, DM_F32, 3, s, fn);
    dm_tensor *c = dm_controller_has_cell_state(&u->c) ? dm_bind_newtensor_named(L, DM_F32, 3, s, fn)
                                                       : NULL;
    dm_error err;
    if (dm_controller_final_state(&u->c, dm_tensor_f32(h), c ? dm_tensor_f32(c) : NULL, &err) != 0)
        dm_bind_error(L, &err);
    return c ? 2 : 1;
}

/* ---- parameters and state ---------------------------------------------------- */

static int c_parameters(lua_State *L)
{
    lctrl *u = check_ctrl(L, "Controller.parameters");
    const dm_controller *c = &u->c;
    lua_createtable(L, (int)dm_controller_num_params(c), 0);
    int k = 0;
    for (int i = 0; i < dm_controller_num_entries(c); i++) {
        if (dm_controller_entry_is_buffer(c, i)) continue;
        const dm_arena_entry *e = dm_controller_entry_info(c, i);
        lua_createtable(L, 0, 3);
        lua_pushstring(L, e->name);
        lua_setfield(L, -2, "name");
        dm_bind_pushview(L, dm_controller_entry_value(c, i), e->ndim, e->shape, 1);
        lua_setfield(L, -2, "value");
        float *g = dm_controller_entry_grad(c, i);
        if (g) {
            dm_bind_pushview(L, g, e->ndim, e->shape, 1);
            lua_setfield(L, -2, "grad");
        }
        if (dm_controller_entry_own_clip(c, i)) {
            lua_pushliteral(L, "policy");
            lua_setfield(L, -2, "group");
        }
        lua_rawseti(L, -2, ++k);
    }
    return 1;
}

/* net:param(name) -> value view, grad view or nil */
static int c_param(lua_State *L)
{
    const char *fn = "Controller.param";
    lctrl *u = check_ctrl(L, fn);
    const char *name = luaL_checkstring(L, 2);
    int i = dm_controller_entry_find(&u->c, name);
    if (i < 0) dm_bind_errorf(L, "%s: no parameter named '%s'", fn, name);
    const dm_arena_entry *e = dm_controller_entry_info(&u->c, i);
    dm_bind_pushview(L, dm_controller_entry_value(&u->c, i), e->ndim, e->shape, 1);
    float *g = dm_controller_entry_grad(&u->c, i);
    if (g)
        dm_bind_pushview(L, g, e->ndim, e->shape, 1);
    else
        lua_pushnil(L);
    return 2;
}

/* net:state_dict() -> {name = Tensor copy}, {names in state_dict order} */
static int c_state_dict(lua_State *L)
{
    lctrl *u = check_ctrl(L, "Controller.state_dict");
    const dm_controller *c = &u->c;
    const int n = dm_controller_num_entries(c);
    lua_createtable(L, 0, n);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        const dm_arena_entry *e = dm_controller_entry_info(c, i);
        dm_tensor *t = dm_bind_newtensor_named(L, DM_F32, e->ndim, e->shape, "Controller.state_dict");
        memcpy(dm_tensor_f32(t), dm_controller_entry_value(c, i), e->numel * sizeof(float));
        lua_setfield(L, -3, e->name);
        lua_pushstring(L, e->name);
        lua_rawseti(L, -2, i + 1);
    }
    return 2;
}

static const char *entry_shape(const dm_arena_entry *e, char *buf, size_t n)
{
    dm_tensor t;
    memset(&t, 0, sizeof t);
    t.ndim = e->ndim;
    for (int d = 0; d < e->ndim; d++) t.shape[d] = e->shape[d];
    return dm_tensor_shape_str(&t, buf, n);
}

/* net:load_state_dict(map): every name of the state_dict must be there
 * with its shape and dtype float32, and nothing else; checked before
 * anything is copied, so a failure leaves the net as it was. */
static int c_load_state_dict(lua_State *L)
{
    const char *fn = "load_state_dict";
    lctrl *u = check_ctrl(L, "Controller.load_state_dict");
    if (!lua_istable(L, 2))
        dm_bind_errorf(L, "%s: expected a table {name = Tensor}, got %s", fn, luaL_typename(L, 2));
    dm_controller *c = &u->c;
    char a[96], b[96];
    const int n = dm_controller_num_entries(c);
    for (int i = 0; i < n; i++) {
        const dm_arena_entry *e = dm_controller_entry_info(c, i);
        lua_getfield(L, 2, e->name);
        if (lua_isnil(L, -1))
            dm_bind_errorf(L, "%s: missing %s (expected shape %s)", fn, e->name,
                           entry_shape(e, a, sizeof a));
        dm_tensor *t = dm_bind_testtensor(L, -1);
        if (!t || !t->storage)
            dm_bind_errorf(L, "%s: %s is %s, expected a Tensor", fn, e->name,
                           t ? "a freed tensor" : luaL_typename(L, -1));
        int same = t->ndim == e->ndim;
        for (int d = 0; same && d < e->ndim; d++) same = t->shape[d] == e->shape[d];
        if (!same)
            dm_bind_errorf(L, "%s: %s has shape %s, expected %s", fn, e->name,
                           dm_tensor_shape_str(t, a, sizeof a), entry_shape(e, b, sizeof b));
        if (t->dtype != DM_F32)
            dm_bind_errorf(L, "%s: %s has dtype %s, expected float32", fn, e->name,
                           dm_dtype_name(t->dtype));
        lua_pop(L, 1);
    }
    /* Unexpected names: report the smallest, so the message is stable. */
    const char *extra = NULL;
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            dm_bind_errorf(L, "%s: unexpected key of type %s (keys are parameter names)", fn,
                           luaL_typename(L, -1));
        const char *k = lua_tostring(L, -1);
        if (dm_controller_entry_find(c, k) < 0 && (!extra || strcmp(k, extra) < 0)) extra = k;
    }
    if (extra) {
        /* copy before raising: the string lives in the table, which stays */
        dm_bind_errorf(L, "%s: unexpected %s (not a parameter of this Controller)", fn, extra);
    }
    for (int i = 0; i < n; i++) {
        const dm_arena_entry *e = dm_controller_entry_info(c, i);
        lua_getfield(L, 2, e->name);
        dm_tensor *t = dm_bind_testtensor(L, -1);
        dm_tensor dst;
        dm_error err;
        if (dm_tensor_init_borrowed(&dst, dm_controller_entry_value(c, i), DM_F32, e->ndim, e->shape,
                                    &err) != 0)
            dm_bind_error(L, &err);
        int rc = dm_tensor_copy(&dst, t, &err);
        dm_tensor_release(&dst);
        if (rc != 0) dm_bind_error(L, &err);
        lua_pop(L, 1);
    }
    /* the kept activations were computed with the old weights */
    dm_controller_forget_forward(c);
    return 0;
}

/* net:config(): the model's keys as the core's field table says: the
 * seed's eight always, cell / use_memory / write_policy only when not the
 * default, the write policy's keys only with reinforce. So the upstream
 * model's config (and its checkpoints) stays exactly the eight fields. */
static int c_config(lua_State *L)
{
    const dm_controller *c = &check_ctrl(L, "Controller.config")->c;
    const dm_controller_config *cfg = dm_controller_get_config(c);
    dm_controller_config def = dm_controller_config_default(0);
    size_t nf;
    const dm_config_field *fs = dm_controller_fields(&nf);
    lua_createtable(L, 0, 8);
    for (size_t i = 0; i < nf; i++) {
        const dm_config_field *f = &fs[i];
        if ((f->flags & DM_FIELD_POLICY) && !dm_controller_has_policy(c)) continue;
        if (f->flags & DM_FIELD_IF_CHANGED) {
            push_field(L, cfg, f);
            push_field(L, &def, f);
            int same = lua_compare(L, -1, -2, LUA_OPEQ);
            lua_pop(L, 2);
            if (same) continue;
        }
        push_field(L, cfg, f);
        lua_setfield(L, -2, f->name);
    }
    return 1;
}

/* net:reinforce(targets [, ignore_index [, reward_targets]]) -> stats
 * table (reward_targets: rewards only where it is not ignore_index, see
 * dm_controller_reinforce_at): the REINFORCE
 * step of the last forward's write decisions (adds into the policy's and
 * baseline's gradients). ignore_index defaults to -1 (none). nil
 * targets: this rank's shard is empty (net:set_reduce(true) only). */
static int c_reinforce(lua_State *L)
{
    const char *fn = "Controller.reinforce";
    lctrl *u = check_ctrl(L, fn);
    /* nil targets: this rank's shard of the global batch is empty */
    int empty = lua_isnoneornil(L, 2);
    dm_tensor *y = empty ? NULL : dm_bind_checktensor(L, 2, fn, "targets");
    lua_Integer ig = luaL_optinteger(L, 3, -1);
    if (!dm_controller_has_policy(&u->c))
        dm_bind_errorf(L, "%s: write_policy is blend (create the controller with write_policy = "
                          "\"reinforce\")", fn);
    dm_error err;
    dm_reinforce_stats st;
    if (empty) {
        if (!lua_isnoneornil(L, 4))
            dm_bind_errorf(L, "%s: reward_targets without targets", fn);
        if (dm_controller_reinforce_empty(&u->c, &st, &err) != 0) dm_bind_error(L, &err);
    } else {
        dm_tensor *yc = check_targets(L, u, fn, y, ig);
        /* Optional reward targets: rewards only where they are not ignored. */
        const int32_t *rt = NULL;
        if (!lua_isnoneornil(L, 4)) {
            dm_tensor *r = dm_bind_checktensor(L, 4, fn, "reward_targets");
            char sb[96];
            if (r->dtype != DM_I32 || r->ndim != 2 || r->shape[0] != y->shape[0] ||
                r->shape[1] != y->shape[1])
                dm_bind_errorf(L, "%s: reward_targets must be an int32 tensor of the targets' shape "
                                  "%lldx%lld, got %s %s",
                               fn, (long long)y->shape[0], (long long)y->shape[1],
                               dm_dtype_name(r->dtype), dm_tensor_shape_str(r, sb, sizeof sb));
            rt = dm_tensor_i32(push_contiguous(L, 4, r));
        }
        if (dm_controller_reinforce_at(&u->c, dm_tensor_i32(yc), rt, (int32_t)ig, &st, &err) != 0)
            dm_bind_error(L, &err);
    }
    double slot_usage = 0.0, write_rate_all = 0.0;
    dm_controller_write_stats(&u->c, &slot_usage, &write_rate_all);
    lua_createtable(L, 0, 12);
    lua_pushinteger(L, (lua_Integer)st.count);
    lua_setfield(L, -2, "count");
    struct { const char *k; double v; } f[] = {
        {"write_rate", st.write_rate},         {"entropy", st.entropy},
        {"mean_reward", st.mean_reward},       {"mean_return", st.mean_return},
        {"mean_advantage", st.mean_advantage}, {"adv_scale", st.adv_scale},
        {"policy_loss", st.policy_loss},       {"baseline_loss", st.baseline_loss},
        {"slot_usage", slot_usage},            {"write_rate_all", write_rate_all}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        lua_pushnumber(L, f[i].v);
        lua_setfield(L, -2, f[i].k);
    }
    return 1;
}

/* net:write_stats() -> {slot_usage=, write_rate=} of the last forward
 * (all positions), or nil for the blend policy or before a forward. */
static int c_write_stats(lua_State *L)
{
    lctrl *u = check_ctrl(L, "Controller.write_stats");
    double slot_usage, write_rate;
    if (dm_controller_write_stats(&u->c, &slot_usage, &write_rate) != 0) {
        lua_pushnil(L);
        return 1;
    }
    lua_createtable(L, 0, 2);
    lua_pushnumber(L, slot_usage);
    lua_setfield(L, -2, "slot_usage");
    lua_pushnumber(L, write_rate);
    lua_setfield(L, -2, "write_rate");
    return 1;
}

/* net:write_trace(i) -> {slots = K, training = bool, steps = {{t=, token=,
 * p_write=, write=, slot=, attention = {K numbers}}, ...}}: sequence i
 * (1-based) of the last forward, step by step. t and slot are 1-based;
 * slot is nil where the step did not write; attention is the step's read,
 * taken before its own write. */
static int c_write_trace(lua_State *L)
{
    const char *fn = "Controller.write_trace";
    lctrl *u = check_ctrl(L, fn);
    int ok = 0;
    lua_Integer i = lua_tointegerx(L, 2, &ok);
    if (!ok)
        dm_bind_errorf(L, "%s: expected a sequence index (an integer >= 1), got %s", fn,
                       luaL_typename(L, 2));
    if (i < 1) dm_bind_errorf(L, "%s: sequence %lld out of range: indices start at 1", fn, (long long)i);
    dm_write_trace tr;
    dm_error err;
    if (dm_controller_write_trace(&u->c, (size_t)(i - 1), &tr, &err) != 0) dm_bind_error(L, &err);
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, (lua_Integer)tr.K);
    lua_setfield(L, -2, "slots");
    lua_pushboolean(L, tr.training);
    lua_setfield(L, -2, "training");
    lua_createtable(L, (int)tr.T, 0);
    for (size_t t = 0; t < tr.T; t++) {
        lua_createtable(L, 0, 6);
        lua_pushinteger(L, (lua_Integer)t + 1);
        lua_setfield(L, -2, "t");
        lua_pushinteger(L, tr.tokens[t]);
        lua_setfield(L, -2, "token");
        lua_pushnumber(L, tr.p_write[t]);
        lua_setfield(L, -2, "p_write");
        lua_pushnumber(L, tr.write[t]);
        lua_setfield(L, -2, "write");
        if (tr.slot[t] >= 0) {
            lua_pushinteger(L, (lua_Integer)tr.slot[t] + 1);
            lua_setfield(L, -2, "slot");
        }
        lua_createtable(L, (int)tr.K, 0);
        for (size_t k = 0; k < tr.K; k++) {
            lua_pushnumber(L, tr.attention[t * tr.K + k]);
            lua_rawseti(L, -2, (lua_Integer)k + 1);
        }
        lua_setfield(L, -2, "attention");
        lua_rawseti(L, -2, (lua_Integer)t + 1);
    }
    lua_setfield(L, -2, "steps");
    return 1;
}

/* net:write_state() -> {second_moment=, updates=}: the running advantage
 * scale (for resumable checkpoints), or nil for the blend policy.
 * net:set_write_state(t) puts it back. */
static int c_write_state(lua_State *L)
{
    lctrl *u = check_ctrl(L, "Controller.write_state");
    double m2;
    int64_t n;
    dm_error err;
    if (dm_controller_write_state(&u->c, &m2, &n, &err) != 0) {
        lua_pushnil(L);
        return 1;
    }
    lua_createtable(L, 0, 2);
    lua_pushnumber(L, m2);
    lua_setfield(L, -2, "second_moment");
    lua_pushinteger(L, (lua_Integer)n);
    lua_setfield(L, -2, "updates");
    return 1;
}

static int c_set_write_state(lua_State *L)
{
    const char *fn = "Controller.set_write_state";
    lctrl *u = check_ctrl(L, fn);
    luaL_checktype(L, 2, LUA_TTABLE);
    if (!dm_controller_has_policy(&u->c)) dm_bind_errorf(L, "%s: write_policy is blend", fn);
    lua_getfield(L, 2, "second_moment");
    lua_getfield(L, 2, "updates");
    int ok = 0;
    lua_Integer n = lua_tointegerx(L, -1, &ok);
    if (lua_type(L, -2) != LUA_TNUMBER || !ok)
        dm_bind_errorf(L, "%s: expected {second_moment = a finite number >= 0, updates = an "
                          "integer >= 0}", fn);
    dm_error err;
    if (dm_controller_set_write_state(&u->c, lua_tonumber(L, -2), (int64_t)n, &err) != 0)
        dm_bind_error(L, &err);
    lua_pop(L, 2);
    return 0;
}

/* net:set_write_options{soft=bool, eta=number, sample_eval=bool}: the
 * curriculum phase, the (decayed) entropy weight, sampled evaluation.
 * Absent fields keep their value. */
static int c_set_write_options(lua_State *L)
{
    const char *fn = "Controller.set_write_options";
    lctrl *u = check_ctrl(L, fn);
    luaL_checktype(L, 2, LUA_TTABLE);
    int soft, se;
    double eta;
    dm_error err;
    if (dm_controller_write_options(&u->c, &soft, &eta, &se, &err) != 0)
        dm_bind_errorf(L, "%s: write_policy is blend", fn);
    dm_bind_check_options(L, 2, fn, (const char *const[]){"soft", "eta", "sample_eval", NULL});
    soft = dm_bind_opt_bool(L, 2, fn, "soft", soft);
    se = dm_bind_opt_bool(L, 2, fn, "sample_eval", se);
    eta = dm_bind_opt_number(L, 2, fn, "eta", eta);
    if (dm_controller_set_write_options(&u->c, soft, eta, se, &err) != 0) dm_bind_error(L, &err);
    return 0;
}

static int c_memory_usage(lua_State *L)
{
    lctrl *u = check_ctrl(L, "Controller.memory_usage");
    const size_t M = dm_controller_dims(&u->c).M;
    int64_t s[1] = {(int64_t)M};
    dm_tensor *t = dm_bind_newtensor_named(L, DM_F32, 1, s, "Controller.memory_usage");
    memcpy(dm_tensor_f32(t), dm_controller_usage(&u->c), M * sizeof(float));
    return 1;
}

/* Copy of a (B,T,width) activation of the last forward, or nil. */
static int push_last(lua_State *L, const float *src, size_t width, const char *fn)
{
    lctrl *u = check_ctrl(L, fn);
    size_t B, T;
    if (dm_controller_last_batch(&u->c, &B, &T) != 0 || !src) {
        lua_pushnil(L);
        return 1;
    }
    int64_t s[3] = {(int64_t)B, (int64_t)T, (int64_t)width};
    dm_tensor *t = dm_bind_newtensor_named(L, DM_F32, 3, s, fn);
    memcpy(dm_tensor_f32(t), src, B * T * width * sizeof(float));
    return 1;
}

static int c_last_query(lua_State *L)
{
    lctrl *u = check_ctrl(L, "Controller.last_query");
    return push_last(L, dm_controller_query(&u->c), dm_controller_dims(&u->c).D, "Controller.last_query");
}

static int c_last_attention(lua_State *L)
{
    lctrl *u = check_ctrl(L, "Controller.last_attention");
    return push_last(L, dm_controller_attention(&u->c), dm_controller_dims(&u->c).M, "Controller.last_attention");
}

/* net:last_slots() -> int32 (B,T): the 1-based slot each position's query
 * scored highest (the one its usage count credits), or nil. */
static int c_last_slots(lua_State *L)
{
    lctrl *u = check_ctrl(L, "Controller.last_slots");
    size_t B, T;
    if (dm_controller_last_batch(&u->c, &B, &T) != 0) {
        lua_pushnil(L);
        return 1;
    }
    int64_t s[2] = {(int64_t)B, (int64_t)T};
    dm_tensor *t = dm_bind_newtensor_named(L, DM_I32, 2, s, "Controller.last_slots");
    const int32_t *a = dm_controller_argmax(&u->c);
    int32_t *o = dm_tensor_i32(t);
    for (size_t i = 0; i < B * T; i++) o[i] = a[i] + 1;
    return 1;
}

/* net:set_generator(gen | nil): dropout draws from gen (kept alive by the
 * net), or from the global generator again with nil. */
static int c_set_generator(lua_State *L)
{
    const char *fn = "Controller.set_generator";
    lctrl *u = check_ctrl(L, fn);
    dm_rng *gen = NULL;
    if (!lua_isnoneornil(L, 2)) {
        gen = dm_bind_testgenerator(L, 2);
        if (!gen)
            dm_bind_errorf(L, "%s: expected a Generator or nil, got %s", fn, luaL_typename(L, 2));
    }
    dm_controller_set_rng(&u->c, gen);
    lua_settop(L, 2);
    lua_setiuservalue(L, 1, 1);
    return 0;
}

static int c_num_parameters(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)dm_controller_param_count(&check_ctrl(L, "Controller.num_parameters")->c));
    return 1;
}

void dm_open_controller(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"forward", c_forward},
        {"backward", c_backward},
        {"loss", c_loss},
        {"logits", c_logits},
        {"zero_grad", c_zero_grad},
        {"train", c_train},
        {"eval", c_eval},
        {"training", c_training},
        {"write_memory", c_write_memory},
        {"set_dropout_mask", c_set_dropout_mask},
        {"set_state", c_set_state},
        {"final_state", c_final_state},
        {"reinforce", c_reinforce},
        {"write_stats", c_write_stats},
        {"write_trace", c_write_trace},
        {"set_write_options", c_set_write_options},
        {"write_state", c_write_state},
        {"set_write_state", c_set_write_state},
        {"parameters", c_parameters},
        {"param", c_param},
        {"state_dict", c_state_dict},
        {"load_state_dict", c_load_state_dict},
        {"config", c_config},
        {"memory_usage", c_memory_usage},
        {"last_query", c_last_query},
        {"last_attention", c_last_attention},
        {"last_slots", c_last_slots},
        {"num_parameters", c_num_parameters},
        {"set_generator", c_set_generator},
        {"set_reduce", c_set_reduce},
        {NULL, NULL},
    };
    if (luaL_newmetatable(L, DM_CONTROLLER_MT)) {
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, c_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, c_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, l_controller_new);
    lua_setfield(L, -2, "Controller");
    lua_pushcfunction(L, l_controller_fields);
    lua_setfield(L, -2, "controller_fields");
    lua_pushcfunction(L, l_controller_sizes);
    lua_setfield(L, -2, "controller_sizes");
}
