/* optim.c (bind): dm.optim.SGD / Adam / AdamW, the lr schedulers
 * (CosineAnnealingLR, ReduceLROnPlateau, StepLR) and dm.clip_grad_norm,
 * the Lua face of core/optim.h.
 *
 * An optimizer takes a list of {name=, value=Tensor, grad=Tensor} entries,
 * as :parameters() of a layer or of dm.Memory returns (or the object
 * itself, when it has a :parameters() method). It keeps raw pointers into
 * those tensors, so it holds the list in its user value: the tensors (and
 * the arenas they view) stay alive as long as the optimizer does, and every
 * step re-checks that none was closed. An entry without grad is frozen.
 * A scheduler holds its optimizer in its user value and writes the new lr
 * into it on each :step(). State tables (:state() / :load_state()) hold
 * only numbers, strings and tensors, keyed by parameter name, so a
 * checkpoint can store them. */
#include "bind/bind.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/optim.h"

#define DM_OPTIM_MT "drlmem.Optimizer"
#define DM_SCHED_MT "drlmem.LRScheduler"

typedef struct loptim {
    dm_optim o;
    int alive;
} loptim;

static const char *kind_name(dm_optim_kind k)
{
    return k == DM_OPTIM_SGD ? "SGD" : k == DM_OPTIM_ADAM ? "Adam" : "AdamW";
}

/* ---- parameter lists ----------------------------------------------------- */

/* Replaces the value at idx by a list when it is an object with a
 * :parameters() method; leaves the list on top of the stack either way. */
static void push_param_list(lua_State *L, int idx, const char *fn)
{
    idx = lua_absindex(L, idx);
    int t = lua_type(L, idx);
    if (t == LUA_TTABLE || t == LUA_TUSERDATA) {
        lua_getfield(L, idx, "parameters");
        if (lua_isfunction(L, -1)) {
            lua_pushvalue(L, idx);
            lua_call(L, 1, 1);
            if (!lua_istable(L, -1))
                dm_bind_errorf(L, "%s: :parameters() returned %s, expected a list", fn,
                               luaL_typename(L, -1));
            return;
        }
        lua_pop(L, 1);
        if (t == LUA_TTABLE) {
            lua_pushvalue(L, idx);
            return;
        }
    }
    dm_bind_errorf(L, "%s: expected a list of {name=, value=, grad=} or an object with "
                      ":parameters(), got %s", fn, luaL_typename(L, idx));
}

/* A contiguous float tensor field of entry (table on top) or NULL when the
 * field is nil and optional. Leaves the stack as it found it. */
static dm_tensor *entry_tensor(lua_State *L, const char *field, int optional, const char *fn,
                               size_t i, const char *name)
{
    lua_getfield(L, -1, field);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        if (optional) return NULL;
        dm_bind_errorf(L, "%s: parameter %zu ('%s') has no %s tensor", fn, i, name, field);
    }
    dm_tensor *t = dm_bind_testtensor(L, -1);
    if (!t || !t->storage || t->dtype != DM_F32 || !dm_tensor_is_contiguous(t))
        dm_bind_errorf(L, "%s: parameter %zu ('%s'): %s must be a contiguous float32 tensor, got %s",
                       fn, i, name, field, t ? (t->storage ? "another kind of tensor" : "a freed tensor")
                                             : luaL_typename(L, -1));
    lua_pop(L, 1); /* the entry still references it */
    return t;
}

/* Reads the list on top into refs (n entries, storage from a userdata
 * pushed above the list). Names default to "p<i>". With need_value = 0
 * (clipping) an entry needs only a grad. */
static dm_param_ref *read_params(lua_State *L, const char *fn, size_t *n_out, int need_value)
{
    int list = lua_gettop(L);
    size_t n = (size_t)luaL_len(L, list);
    dm_param_ref *refs = (dm_param_ref *)lua_newuserdatauv(L, (n ? n : 1) * sizeof *refs, 0);
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, list, (lua_Integer)i + 1);
        if (!lua_istable(L, -1))
            dm_bind_errorf(L, "%s: parameter %zu: expected a table {name=, value=, grad=}, got %s",
                           fn, i + 1, luaL_typename(L, -1));
        lua_getfield(L, -1, "name");
        const char *name = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        lua_pop(L, 1); /* still referenced by the entry, which the list holds */
        char buf[32];
        if (!name) snprintf(buf, sizeof buf, "p%zu", i + 1);
        const char *shown = name ? name : buf;
        dm_tensor *v = entry_tensor(L, "value", !need_value, fn, i + 1, shown);
        dm_tensor *g = entry_tensor(L, "grad", 1, fn, i + 1, shown);
        if (v && g && dm_tensor_numel(v) != dm_tensor_numel(g)) {
            char a[96], b[96];
            dm_bind_errorf(L, "%s: parameter %zu ('%s'): grad is %s but value is %s", fn, i + 1,
                           shown, dm_tensor_shape_str(g, a, sizeof a), dm_tensor_shape_str(v, b, sizeof b));
        }
        refs[i].name = name;
        refs[i].param = v ? dm_tensor_f32(v) : NULL;
        refs[i].grad = g ? dm_tensor_f32(g) : NULL;
        refs[i].numel = v ? dm_tensor_numel(v) : g ? dm_tensor_numel(g) : 0;
        lua_pop(L, 1);
    }
    *n_out = n;
    return refs;
}

/* ---- optimizer ----------------------------------------------------------- */

static loptim *check_opt(lua_State *L, int idx, const char *fn)
{
    loptim *u = (loptim *)luaL_testudata(L, idx, DM_OPTIM_MT);
    if (!u) dm_bind_errorf(L, "%s: expected an optimizer, got %s", fn, luaL_typename(L, idx));
    if (!u->alive) dm_bind_errorf(L, "%s: the optimizer has been freed", fn);
    return u;
}

static int optim_new(lua_State *L, dm_optim_kind kind)
{
    const char *fn = kind_name(kind);
    lua_settop(L, 2);
    if (lua_isnil(L, 2)) {
        lua_newtable(L);
        lua_replace(L, 2);
    }
    if (!lua_istable(L, 2))
        dm_bind_errorf(L, "%s: argument 2 (opts): expected a table, got %s", fn, luaL_typename(L, 2));
    static const char *const sgd_keys[] = {"lr", "momentum", "dampening", "nesterov", "weight_decay", NULL};
    static const char *const adam_keys[] = {"lr", "betas", "eps", "weight_decay", NULL};
    dm_bind_check_options(L, 2, fn, kind == DM_OPTIM_SGD ? sgd_keys : adam_keys);
    dm_optim_config cfg = dm_optim_defaults(kind);
    cfg.lr = dm_bind_opt_number(L, 2, fn, "lr", cfg.lr);
    cfg.weight_decay = dm_bind_opt_number(L, 2, fn, "weight_decay", cfg.weight_decay);
    if (kind == DM_OPTIM_SGD) {
        cfg.momentum = dm_bind_opt_number(L, 2, fn, "momentum", 0.0);
        cfg.dampening = dm_bind_opt_number(L, 2, fn, "dampening", 0.0);
        lua_getfield(L, 2, "nesterov");
        cfg.nesterov = lua_toboolean(L, -1);
        lua_pop(L, 1);
    } else {
        cfg.eps = dm_bind_opt_number(L, 2, fn, "eps", cfg.eps);
        lua_getfield(L, 2, "betas");
        if (!lua_isnil(L, -1)) {
            if (!lua_istable(L, -1) || luaL_len(L, -1) != 2)
                dm_bind_errorf(L, "%s: option betas: expected {beta1, beta2}", fn);
            lua_rawgeti(L, -1, 1);
            lua_rawgeti(L, -2, 2);
            if (lua_type(L, -2) != LUA_TNUMBER || lua_type(L, -1) != LUA_TNUMBER)
                dm_bind_errorf(L, "%s: option betas: expected two numbers", fn);
            cfg.beta1 = lua_tonumber(L, -2);
            cfg.beta2 = lua_tonumber(L, -1);
            lua_pop(L, 2);
        }
        lua_pop(L, 1);
    }
    push_param_list(L, 1, fn); /* 3: list */
    size_t n;
    dm_param_ref *refs = read_params(L, fn, &n, 1); /* 4: refs scratch */
    loptim *u = (loptim *)lua_newuserdatauv(L, sizeof(loptim), 1);
    memset(u, 0, sizeof *u);
    luaL_setmetatable(L, DM_OPTIM_MT);
    dm_error err;
    if (dm_optim_init(&u->o, &cfg, refs, n, &err) != 0) dm_bind_error(L, &err);
    u->alive = 1;
    lua_pushvalue(L, 3);
    lua_setiuservalue(L, -2, 1);
    return 1;
}

static int l_sgd(lua_State *L) { return optim_new(L, DM_OPTIM_SGD); }
static int l_adam(lua_State *L) { return optim_new(L, DM_OPTIM_ADAM); }
static int l_adamw(lua_State *L) { return optim_new(L, DM_OPTIM_ADAMW); }

static int o_gc(lua_State *L)
{
    loptim *u = (loptim *)luaL_checkudata(L, 1, DM_OPTIM_MT);
    if (u->alive) dm_optim_free(&u->o);
    u->alive = 0;
    return 0;
}

/* Every tensor the optimizer points into must still be open and unmoved. */
static void check_alive(lua_State *L, loptim *u, const char *fn)
{
    lua_getiuservalue(L, 1, 1);
    int list = lua_gettop(L);
    for (size_t i = 0; i < dm_optim_count(&u->o); i++) {
        const dm_param_ref *p = dm_optim_param(&u->o, i);
        lua_rawgeti(L, list, (lua_Integer)i + 1);
        const char *fields[2] = {"value", "grad"};
        float *want[2] = {p->param, p->grad};
        for (int f = 0; f < 2; f++) {
            lua_getfield(L, -1, fields[f]);
            dm_tensor *t = dm_bind_testtensor(L, -1);
            if (want[f] && (!t || !t->storage || dm_tensor_f32(t) != want[f]))
                dm_bind_errorf(L, "%s: parameter '%s': its %s tensor was closed or replaced", fn,
                               p->name, fields[f]);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

static int o_step(lua_State *L)
{
    loptim *u = check_opt(L, 1, "Optimizer.step");
    check_alive(L, u, "Optimizer.step");
    dm_optim_step(&u->o);
    return 0;
}

static int o_zero_grad(lua_State *L)
{
    loptim *u = check_opt(L, 1, "Optimizer.zero_grad");
    check_alive(L, u, "Optimizer.zero_grad");
    dm_optim_zero_grad(&u->o);
    return 0;
}

static int o_set_lr(lua_State *L)
{
    loptim *u = check_opt(L, 1, "Optimizer.set_lr");
    if (lua_type(L, 2) != LUA_TNUMBER || !(lua_tonumber(L, 2) >= 0))
        dm_bind_errorf(L, "Optimizer.set_lr: expected a number >= 0, got %s",
                       lua_type(L, 2) == LUA_TNUMBER ? lua_tostring(L, 2) : luaL_typename(L, 2));
    dm_optim_set_lr(&u->o, lua_tonumber(L, 2));
    return 0;
}

static int o_get_lr(lua_State *L)
{
    lua_pushnumber(L, dm_optim_get_lr(&check_opt(L, 1, "Optimizer.get_lr")->o));
    return 1;
}

static int o_parameters(lua_State *L)
{
    check_opt(L, 1, "Optimizer.parameters");
    lua_getiuservalue(L, 1, 1);
    return 1;
}

/* Shape of parameter i's value tensor, for the state tensors. */
static dm_tensor *param_value(lua_State *L, size_t i)
{
    lua_getiuservalue(L, 1, 1);
    lua_rawgeti(L, -1, (lua_Integer)i + 1);
    lua_getfield(L, -1, "value");
    dm_tensor *t = dm_bind_testtensor(L, -1);
    lua_pop(L, 3); /* the optimizer's list keeps it alive */
    return t;
}

/* opt:state() -> { kind=, lr=, step={name=n}, <moment>={name=Tensor} } */
static int o_state(lua_State *L)
{
    loptim *u = check_opt(L, 1, "Optimizer.state");
    lua_newtable(L);
    int st = lua_gettop(L);
    size_t n = dm_optim_count(&u->o);
    lua_pushstring(L, kind_name(dm_optim_get_config(&u->o)->kind));
    lua_setfield(L, st, "kind");
    lua_pushnumber(L, dm_optim_get_lr(&u->o));
    lua_setfield(L, st, "lr");
    lua_newtable(L);
    for (size_t i = 0; i < n; i++) {
        lua_pushinteger(L, (lua_Integer)dm_optim_step_count(&u->o, i));
        lua_setfield(L, -2, dm_optim_param(&u->o, i)->name);
    }
    lua_setfield(L, st, "step");
    for (int k = 0; k < dm_optim_num_moments(&u->o); k++) {
        lua_newtable(L);
        for (size_t i = 0; i < n; i++) {
            const dm_param_ref *p = dm_optim_param(&u->o, i);
            dm_tensor *v = param_value(L, i);
            dm_tensor *t = dm_bind_newtensor_named(L, DM_F32, v->ndim, v->shape, "Optimizer.state");
            memcpy(dm_tensor_f32(t), dm_optim_moment(&u->o, i, k), p->numel * sizeof(float));
            lua_setfield(L, -2, p->name);
        }
        lua_setfield(L, st, dm_optim_moment_name(&u->o, k));
    }
    return 1;
}

/* opt:load_state(tbl): the inverse of :state(); every field is optional,
 * names must exist and tensors must match in size. */
static int o_load_state(lua_State *L)
{
    const char *fn = "Optimizer.load_state";
    loptim *u = check_opt(L, 1, fn);
    luaL_checktype(L, 2, LUA_TTABLE);
    const char *kind = kind_name(dm_optim_get_config(&u->o)->kind);
    lua_getfield(L, 2, "kind");
    if (lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), kind) != 0)
        dm_bind_errorf(L, "%s: state is for %s, this optimizer is %s", fn, lua_tostring(L, -1),
                       kind);
    lua_pop(L, 1);
    lua_getfield(L, 2, "lr");
    if (lua_type(L, -1) == LUA_TNUMBER) dm_optim_set_lr(&u->o, lua_tonumber(L, -1));
    lua_pop(L, 1);
    /* Check everything before changing anything, so a bad table leaves the
     * optimizer as it was. Pass 0 checks, pass 1 applies. */
    for (int pass = 0; pass < 2; pass++) {
        lua_getfield(L, 2, "step");
        if (lua_istable(L, -1)) {
            lua_pushnil(L);
            while (lua_next(L, -2)) {
                const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
                int64_t i = name ? dm_optim_find(&u->o, name) : -1;
                if (i < 0) dm_bind_errorf(L, "%s: step: no parameter named '%s'", fn, name ? name : "?");
                int ok = 0;
                lua_Integer s = lua_tointegerx(L, -1, &ok);
                if (!ok || s < 0) dm_bind_errorf(L, "%s: step['%s']: expected an integer >= 0", fn, name);
                dm_error err;
                if (pass && dm_optim_set_step_count(&u->o, (size_t)i, (int64_t)s, &err) != 0)
                    dm_bind_error(L, &err);
                lua_pop(L, 1);
            }
        }
        lua_pop(L, 1);
        for (int k = 0; k < dm_optim_num_moments(&u->o); k++) {
            const char *mn = dm_optim_moment_name(&u->o, k);
            lua_getfield(L, 2, mn);
            if (lua_istable(L, -1)) {
                lua_pushnil(L);
                while (lua_next(L, -2)) {
                    const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
                    int64_t i = dm_optim_find(&u->o, name);
                    if (i < 0) dm_bind_errorf(L, "%s: %s: no parameter named '%s'", fn, mn, name);
                    dm_tensor *t = dm_bind_checkf32(L, -1, fn, mn);
                    size_t numel = dm_optim_param(&u->o, (size_t)i)->numel;
                    if (dm_tensor_numel(t) != numel)
                        dm_bind_errorf(L, "%s: %s['%s'] has %zu elements, the parameter has %zu", fn,
                                       mn, name, dm_tensor_numel(t), numel);
                    if (pass) {
                        dm_tensor dst;
                        dm_error err;
                        if (dm_tensor_init_borrowed(&dst, dm_optim_moment(&u->o, (size_t)i, k), DM_F32,
                                                    t->ndim, t->shape, &err) != 0)
                            dm_bind_error(L, &err);
                        int rc = dm_tensor_copy(&dst, t, &err);
                        dm_tensor_release(&dst);
                        if (rc != 0) dm_bind_error(L, &err);
                    }
                    lua_pop(L, 1);
                }
            }
            lua_pop(L, 1);
        }
    }
    return 0;
}

static int o_tostring(lua_State *L)
{
    loptim *u = (loptim *)luaL_checkudata(L, 1, DM_OPTIM_MT);
    if (!u->alive) {
        lua_pushliteral(L, "Optimizer(freed)");
        return 1;
    }
    const dm_optim_config *cfg = dm_optim_get_config(&u->o);
    char buf[160];
    snprintf(buf, sizeof buf, "%s(lr=%g, weight_decay=%g, params=%zu)", kind_name(cfg->kind),
             cfg->lr, cfg->weight_decay, dm_optim_count(&u->o));
    lua_pushstring(L, buf);
    return 1;
}

/* dm.clip_grad_norm(params_or_module, max_norm) -> total norm */
static int l_clip_grad_norm(lua_State *L)
{
    const char *fn = "clip_grad_norm";
    if (lua_type(L, 2) != LUA_TNUMBER)
        dm_bind_errorf(L, "%s: argument 2 (max_norm): expected a number, got %s", fn, luaL_typename(L, 2));
    double max_norm = lua_tonumber(L, 2);
    push_param_list(L, 1, fn);
    size_t n;
    dm_param_ref *refs = read_params(L, fn, &n, 0);
    lua_pushnumber(L, dm_clip_grad_norm(refs, n, max_norm));
    return 1;
}

/* ---- schedulers ---------------------------------------------------------- */

static int sched_new(lua_State *L, dm_lr_sched_kind kind)
{
    const char *fn = dm_lr_sched_name(kind);
    loptim *o = check_opt(L, 1, fn);
    lua_settop(L, 2);
    if (lua_isnil(L, 2)) {
        lua_newtable(L);
        lua_replace(L, 2);
    }
    if (!lua_istable(L, 2))
        dm_bind_errorf(L, "%s: argument 2 (opts): expected a table, got %s", fn, luaL_typename(L, 2));
    static const char *const cos_keys[] = {"T_max", "eta_min", NULL};
    static const char *const step_keys[] = {"step_size", "gamma", NULL};
    static const char *const plat_keys[] = {"mode", "factor", "patience", "threshold",
                                            "threshold_mode", "cooldown", "min_lr", "eps", NULL};
    dm_bind_check_options(L, 2, fn, kind == DM_SCHED_COSINE ? cos_keys : kind == DM_SCHED_STEP ? step_keys : plat_keys);
    dm_lr_sched *s = (dm_lr_sched *)lua_newuserdatauv(L, sizeof *s, 1);
    memset(s, 0, sizeof *s);
    luaL_setmetatable(L, DM_SCHED_MT);
    s->kind = kind;
    double base = dm_optim_get_lr(&o->o);
    dm_error err;
    int rc = 0;
    if (kind == DM_SCHED_COSINE) {
        rc = dm_cosine_lr_init(&s->u.cosine, base, dm_bind_opt_int(L, 2, fn, "T_max", 0, 1),
                               dm_bind_opt_number(L, 2, fn, "eta_min", 0.0), &err);
    } else if (kind == DM_SCHED_STEP) {
        rc = dm_step_lr_init(&s->u.step, base, dm_bind_opt_int(L, 2, fn, "step_size", 0, 1),
                             dm_bind_opt_number(L, 2, fn, "gamma", 0.1), &err);
    } else {
        dm_plateau_lr *p = &s->u.plateau;
        dm_plateau_lr_defaults(p, base);
        p->mode_max = dm_bind_opt_enum(L, 2, fn, "mode", (const char *const[]){"min", "max", NULL}, 0) == 1;
        p->threshold_abs = dm_bind_opt_enum(L, 2, fn, "threshold_mode", (const char *const[]){"rel", "abs", NULL}, 0) == 1;
        p->factor = dm_bind_opt_number(L, 2, fn, "factor", p->factor);
        p->patience = dm_bind_opt_int(L, 2, fn, "patience", p->patience, 0);
        p->threshold = dm_bind_opt_number(L, 2, fn, "threshold", p->threshold);
        p->cooldown = dm_bind_opt_int(L, 2, fn, "cooldown", p->cooldown, 0);
        p->min_lr = dm_bind_opt_number(L, 2, fn, "min_lr", p->min_lr);
        p->eps = dm_bind_opt_number(L, 2, fn, "eps", p->eps);
        rc = dm_plateau_lr_init(p, &err);
    }
    if (rc != 0) dm_bind_error(L, &err);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    return 1;
}

static int l_cosine(lua_State *L) { return sched_new(L, DM_SCHED_COSINE); }
static int l_steplr(lua_State *L) { return sched_new(L, DM_SCHED_STEP); }
static int l_plateau(lua_State *L) { return sched_new(L, DM_SCHED_PLATEAU); }

static dm_lr_sched *check_sched(lua_State *L, const char *fn)
{
    dm_lr_sched *s = (dm_lr_sched *)luaL_testudata(L, 1, DM_SCHED_MT);
    if (!s) dm_bind_errorf(L, "%s: expected a scheduler as self, got %s", fn, luaL_typename(L, 1));
    return s;
}

/* Pushes the scheduler's optimizer (user value) and returns it. */
static loptim *sched_opt(lua_State *L, const char *fn)
{
    lua_getiuservalue(L, 1, 1);
    loptim *o = check_opt(L, -1, fn);
    lua_pop(L, 1); /* the scheduler keeps it alive */
    return o;
}

/* sched:step([metric]) -> lr for the next epoch, also set on the optimizer */
static int s_step(lua_State *L)
{
    dm_lr_sched *s = check_sched(L, "LRScheduler.step");
    loptim *o = sched_opt(L, "LRScheduler.step");
    double metric = 0.0;
    if (s->kind == DM_SCHED_PLATEAU) {
        if (lua_type(L, 2) != LUA_TNUMBER)
            dm_bind_errorf(L, "ReduceLROnPlateau.step: expected a metric (number), got %s",
                           luaL_typename(L, 2));
        metric = lua_tonumber(L, 2);
    }
    double lr = dm_lr_sched_step(s, metric, dm_optim_get_lr(&o->o));
    dm_optim_set_lr(&o->o, lr);
    lua_pushnumber(L, lr);
    return 1;
}

static int s_get_lr(lua_State *L)
{
    lua_pushnumber(L, dm_lr_sched_lr(check_sched(L, "LRScheduler.get_lr")));
    return 1;
}

/* sched:state() -> {kind = NAME, <the named state values>} */
static int s_state(lua_State *L)
{
    dm_lr_sched *s = check_sched(L, "LRScheduler.state");
    dm_sched_value v[DM_SCHED_STATE_MAX];
    size_t n = dm_lr_sched_state(s, v);
    lua_newtable(L);
    lua_pushstring(L, dm_lr_sched_name(s->kind));
    lua_setfield(L, -2, "kind");
    for (size_t i = 0; i < n; i++) {
        if (v[i].integer) lua_pushinteger(L, (lua_Integer)v[i].value);
        else lua_pushnumber(L, v[i].value);
        lua_setfield(L, -2, v[i].name);
    }
    return 1;
}

/* sched:load_state(tbl): restores the values :state() gave (each checked by
 * the core; nothing changes on an error) and puts the restored lr on the
 * optimizer. */
static int s_load_state(lua_State *L)
{
    const char *fn = "LRScheduler.load_state";
    dm_lr_sched *s = check_sched(L, fn);
    loptim *o = sched_opt(L, fn);
    luaL_checktype(L, 2, LUA_TTABLE);
    const char *kind = dm_lr_sched_name(s->kind);
    lua_getfield(L, 2, "kind");
    if (lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), kind) != 0)
        dm_bind_errorf(L, "%s: state is for %s, this scheduler is %s", fn, lua_tostring(L, -1), kind);
    lua_pop(L, 1);
    dm_sched_value v[DM_SCHED_STATE_MAX];
    size_t n = dm_lr_sched_state(s, v), k = 0;
    for (size_t i = 0; i < n; i++) {
        lua_getfield(L, 2, v[i].name);
        if (!lua_isnil(L, -1)) {
            if (lua_type(L, -1) != LUA_TNUMBER)
                dm_bind_errorf(L, "%s: %s: expected a number, got %s", fn, v[i].name,
                               luaL_typename(L, -1));
            v[k] = v[i];
            v[k++].value = lua_tonumber(L, -1);
        }
        lua_pop(L, 1);
    }
    dm_error err;
    if (dm_lr_sched_restore(s, v, k, &err) != 0) dm_bind_error(L, &err);
    dm_optim_set_lr(&o->o, dm_lr_sched_lr(s));
    return 0;
}

static int s_tostring(lua_State *L)
{
    dm_lr_sched *s = (dm_lr_sched *)luaL_checkudata(L, 1, DM_SCHED_MT);
    char buf[128];
    snprintf(buf, sizeof buf, "%s(lr=%g)", dm_lr_sched_name(s->kind), dm_lr_sched_lr(s));
    lua_pushstring(L, buf);
    return 1;
}

void dm_open_optim(lua_State *L)
{
    static const luaL_Reg omethods[] = {
        {"step", o_step},       {"zero_grad", o_zero_grad},   {"set_lr", o_set_lr},
        {"get_lr", o_get_lr},   {"state", o_state},           {"load_state", o_load_state},
        {"parameters", o_parameters}, {NULL, NULL},
    };
    luaL_newmetatable(L, DM_OPTIM_MT);
    lua_pushcfunction(L, o_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, o_gc);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, o_tostring);
    lua_setfield(L, -2, "__tostring");
    luaL_newlib(L, omethods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);

    static const luaL_Reg smethods[] = {
        {"step", s_step},   {"get_lr", s_get_lr}, {"state", s_state},
        {"load_state", s_load_state}, {NULL, NULL},
    };
    luaL_newmetatable(L, DM_SCHED_MT);
    lua_pushcfunction(L, s_tostring);
    lua_setfield(L, -2, "__tostring");
    luaL_newlib(L, smethods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);

    static const luaL_Reg optim_fns[] = {
        {"SGD", l_sgd},
        {"Adam", l_adam},
        {"AdamW", l_adamw},
        {"CosineAnnealingLR", l_cosine},
        {"StepLR", l_steplr},
        {"ReduceLROnPlateau", l_plateau},
        {NULL, NULL},
    };
    luaL_newlib(L, optim_fns);
    lua_setfield(L, -2, "optim");
    lua_pushcfunction(L, l_clip_grad_norm);
    lua_setfield(L, -2, "clip_grad_norm");
}
