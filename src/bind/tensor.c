/* tensor.c (bind): dm.Tensor, the Lua face of dm_tensor.
 *
 * This file turns Lua values into core calls: it checks argument types and
 * converts Lua's 1-based indices and dimensions (negative dimensions count
 * from the end: -1 is the last) to the core's 0-based ones, creates the
 * result userdata empty before the core fills it (see bind.c), and gives
 * every view the owner of the tensor it was made from. The numerics, the
 * shape checks and their messages live in src/core/tensor*.c.
 *
 * Choices made for Lua users, each documented where it is implemented:
 * full reductions (t:sum(), t:max()) return Lua numbers, reductions along a
 * dimension return tensors; indices returned by max/min/argmax/topk count
 * from 1 and are int32 tensors; t[i] on a 1-d tensor is a number and on an
 * n-d tensor the view t:select(1, i). */
#include "bind/bind.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- argument helpers ---------------------------------------------------- */

static double check_num(lua_State *L, int idx, const char *fn, const char *arg)
{
    if (lua_type(L, idx) != LUA_TNUMBER)
        dm_bind_errorf(L, "%s: argument %s: expected a number, got %s", fn, arg, dm_bind_typename(L, idx));
    return lua_tonumber(L, idx);
}


static int opt_bool(lua_State *L, int idx) { return lua_toboolean(L, idx); }

static int dm_numel_zero(const dm_tensor *t) { return dm_tensor_numel(t) == 0; }

static dm_tensor *self_tensor(lua_State *L, const char *fn)
{
    return dm_bind_checktensor(L, 1, fn, "self");
}

static dm_tensor *self_f32(lua_State *L, const char *fn)
{
    return dm_bind_checkf32(L, 1, fn, "self");
}

/* 1-based (or negative: from the end) dimension at idx -> 0-based. */
static int check_dim(lua_State *L, int idx, const dm_tensor *t, const char *fn)
{
    int64_t d = dm_bind_check_int(L, idx, fn, "dim");
    int64_t n = t->ndim;
    int64_t z = d < 0 ? d + n : d - 1;
    if (d == 0 || z < 0 || z >= n) {
        if (n == 0) dm_bind_errorf(L, "%s: dimension %" PRId64 " out of range for a scalar (0-d) tensor", fn, d);
        dm_bind_errorf(L, "%s: dimension %" PRId64 " out of range for a %d-d tensor (expected 1 to %d, or -%d to -1)",
                   fn, d, t->ndim, t->ndim, t->ndim);
    }
    return (int)z;
}

static dm_dtype check_dtype(lua_State *L, int idx, const char *fn)
{
    const char *s = lua_tostring(L, idx);
    if (lua_type(L, idx) == LUA_TSTRING) {
        if (strcmp(s, "float32") == 0 || strcmp(s, "float") == 0) return DM_F32;
        if (strcmp(s, "int32") == 0 || strcmp(s, "int") == 0) return DM_I32;
        dm_bind_errorf(L, "%s: unknown dtype '%s' (expected \"float32\" or \"int32\")", fn, s);
    }
    dm_bind_errorf(L, "%s: argument dtype: expected \"float32\" or \"int32\", got %s", fn, dm_bind_typename(L, idx));
    return DM_F32;
}

/* Reads a shape given either as a table ({2,3}) at `first` or as integer
 * arguments first..last. Returns the number of dimensions. */
static int read_shape(lua_State *L, int first, int last, const char *fn, int64_t *shape)
{
    char arg[32];
    if (first <= last && lua_type(L, first) == LUA_TTABLE) {
        if (last > first) dm_bind_errorf(L, "%s: unexpected argument %d after the size table (%s)", fn,
                                     first + 1, dm_bind_typename(L, first + 1));
        lua_Integer n = (lua_Integer)lua_rawlen(L, first);
        if (n > DM_MAX_DIMS) dm_bind_errorf(L, "%s: %d dimensions given, expected at most %d", fn, (int)n, DM_MAX_DIMS);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, first, i);
            snprintf(arg, sizeof arg, "size[%d]", (int)i);
            shape[i - 1] = dm_bind_check_int(L, -1, fn, arg);
            lua_pop(L, 1);
        }
        return (int)n;
    }
    int n = last - first + 1;
    if (n < 0) n = 0;
    if (n > DM_MAX_DIMS) dm_bind_errorf(L, "%s: %d dimensions given, expected at most %d", fn, n, DM_MAX_DIMS);
    for (int i = 0; i < n; i++) {
        snprintf(arg, sizeof arg, "size %d", i + 1);
        shape[i] = dm_bind_check_int(L, first + i, fn, arg);
    }
    return n;
}

/* Pushes a view (made by the core into an empty userdata) of the tensor at
 * src_idx, keeping src's owner alive. */
#define PUSH_VIEW(L, src_idx, call)                                                     \
    do {                                                                                \
        dm_error err_;                                                                  \
        dm_tensor *v_ = dm_bind_newempty(L);                                            \
        dm_bind_shareowner(L, (src_idx), -1);                                           \
        if ((call(v_, &err_)) != 0) dm_bind_error(L, &err_);                            \
    } while (0)

/* ---- random generators ------------------------------------------------------ */

/* The generator at idx when it is a dm.Generator, else NULL. */
static dm_rng *test_generator(lua_State *L, int idx) { return dm_bind_testgenerator(L, idx); }

/* ---- constructors ----------------------------------------------------------- */

/* Trailing dtype string (optional): strips it from the argument range. */
static dm_dtype trailing_dtype(lua_State *L, int *last, const char *fn)
{
    if (*last >= 1 && lua_type(L, *last) == LUA_TSTRING) {
        dm_dtype d = check_dtype(L, *last, fn);
        (*last)--;
        return d;
    }
    return DM_F32;
}

static int fill_ctor(lua_State *L, const char *fn, double v)
{
    int64_t shape[DM_MAX_DIMS];
    int last = lua_gettop(L);
    dm_dtype dt = trailing_dtype(L, &last, fn);
    int nd = read_shape(L, 1, last, fn, shape);
    dm_tensor *t = dm_bind_newtensor_named(L, dt, nd, shape, fn);
    if (v != 0) dm_tensor_fill(t, v);
    return 1;
}

static int l_zeros(lua_State *L) { return fill_ctor(L, "zeros", 0); }
static int l_ones(lua_State *L) { return fill_ctor(L, "ones", 1); }

/* dm.full({2,3}, v [, dtype]) or dm.full(2, 3, v [, dtype]): the last
 * number is the value. */
static int l_full(lua_State *L)
{
    int64_t shape[DM_MAX_DIMS];
    dm_error err;
    int last = lua_gettop(L);
    dm_dtype dt = trailing_dtype(L, &last, "full");
    if (last < 1) dm_bind_errorf(L, "full: argument value: expected a number, got no value");
    double v = check_num(L, last, "full", "value");
    int nd = read_shape(L, 1, last - 1, "full", shape);
    if (dt == DM_I32 && dm_tensor_check_int32_value(v, "full", &err)) dm_bind_error(L, &err);
    dm_tensor *t = dm_bind_newtensor_named(L, dt, nd, shape, "full");
    dm_tensor_fill(t, v);
    return 1;
}

/* dm.rand(sizes... [, generator]) / dm.randn: float32, one draw per element
 * in row-major order from the generator (default: the global one). */
static int random_ctor(lua_State *L, const char *fn, int normal)
{
    int64_t shape[DM_MAX_DIMS];
    dm_error err;
    int last = lua_gettop(L);
    dm_rng *r = &dm_rng_global;
    if (last >= 1 && test_generator(L, last)) r = test_generator(L, last--);
    int nd = read_shape(L, 1, last, fn, shape);
    dm_tensor *t = dm_bind_newtensor_named(L, DM_F32, nd, shape, fn);
    if ((normal ? dm_tensor_randn_(t, r, fn, &err) : dm_tensor_rand_(t, r, fn, &err)) != 0)
        dm_bind_error(L, &err);
    return 1;
}

static int l_rand(lua_State *L) { return random_ctor(L, "rand", 0); }
static int l_randn(lua_State *L) { return random_ctor(L, "randn", 1); }

/* dm.arange(end), dm.arange(start, end [, step]) [, dtype]: PyTorch's
 * half-open range (end excluded), float32 unless "int32" is given. */
static int l_arange(lua_State *L)
{
    dm_error err;
    int last = lua_gettop(L);
    dm_dtype dt = trailing_dtype(L, &last, "arange");
    double start = 0, end, step = 1;
    if (last == 1) {
        end = check_num(L, 1, "arange", "end");
    } else if (last == 2 || last == 3) {
        start = check_num(L, 1, "arange", "start");
        end = check_num(L, 2, "arange", "end");
        if (last == 3) step = check_num(L, 3, "arange", "step");
    } else {
        return dm_bind_errorf(L, "arange: expected (end), (start, end) or (start, end, step), got %d arguments", last);
    }
    dm_tensor *t = dm_bind_newempty(L);
    if (dm_tensor_arange(t, start, end, step, dt, &err)) dm_bind_error(L, &err);
    return 1;
}

/* dm.tensor(nested_table [, dtype]): the shape is read down the first
 * elements ({{1,2},{3,4}} -> 2x2), then every table is checked against it,
 * so ragged input is an error naming the offending element. */
static void path_str(char *buf, size_t n, const int64_t *path, int depth)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < depth && used < n; i++) {
        int w = snprintf(buf + used, n - used, "[%" PRId64 "]", path[i] + 1);
        if (w < 0) break;
        used += (size_t)w;
    }
}

static void fill_from_table(lua_State *L, int idx, dm_tensor *t, int depth, int64_t *path,
                            int64_t *pos)
{
    char ps[128];
    dm_error err;
    if (depth == t->ndim) {
        if (lua_type(L, idx) != LUA_TNUMBER) {
            path_str(ps, sizeof ps, path, depth);
            dm_bind_errorf(L, "tensor: element %s is %s, expected a number%s", ps, dm_bind_typename(L, idx),
                       lua_istable(L, idx) ? " (ragged nesting: too deep here)" : "");
        }
        double v = lua_tonumber(L, idx);
        if (t->dtype == DM_I32 && dm_tensor_check_int32_value(v, "tensor", &err)) {
            path_str(ps, sizeof ps, path, depth);
            dm_bind_errorf(L, "tensor: element %s: value %s is not an int32 integer", ps, lua_tostring(L, idx));
        }
        dm_tensor_set_at(t, (*pos)++, v);
        return;
    }
    path_str(ps, sizeof ps, path, depth);
    if (!lua_istable(L, idx))
        dm_bind_errorf(L, "tensor: element %s is %s, expected a table of %" PRId64 " (ragged nesting)",
                   ps, dm_bind_typename(L, idx), t->shape[depth]);
    int64_t n = (int64_t)lua_rawlen(L, idx);
    if (n != t->shape[depth])
        dm_bind_errorf(L, "tensor: ragged table: %s%s has %" PRId64 " elements, expected %" PRId64,
                   depth ? "element " : "the table", ps, n, t->shape[depth]);
    luaL_checkstack(L, 4, "tensor: nesting too deep");
    for (int64_t i = 0; i < n; i++) {
        path[depth] = i;
        lua_rawgeti(L, idx, (lua_Integer)(i + 1));
        fill_from_table(L, lua_gettop(L), t, depth + 1, path, pos);
        lua_pop(L, 1);
    }
}

static int l_tensor(lua_State *L)
{
    int64_t shape[DM_MAX_DIMS], path[DM_MAX_DIMS] = {0}, pos = 0;
    int last = lua_gettop(L);
    dm_dtype dt = trailing_dtype(L, &last, "tensor");
    if (last != 1) dm_bind_errorf(L, "tensor: expected a (nested) table of numbers, got %d arguments", last);
    if (lua_type(L, 1) == LUA_TNUMBER) {
        dm_tensor *t = dm_bind_newtensor_named(L, dt, 0, shape, "tensor");
        lua_pushvalue(L, 1);
        fill_from_table(L, lua_gettop(L), t, 0, path, &pos);
        lua_pop(L, 1);
        return 1;
    }
    if (!lua_istable(L, 1))
        dm_bind_errorf(L, "tensor: argument 1: expected a table of numbers, got %s", dm_bind_typename(L, 1));
    int nd = 0;
    lua_pushvalue(L, 1);
    while (lua_istable(L, -1)) {
        if (nd == DM_MAX_DIMS) dm_bind_errorf(L, "tensor: nesting deeper than %d dimensions", DM_MAX_DIMS);
        shape[nd++] = (int64_t)lua_rawlen(L, -1);
        if (shape[nd - 1] == 0) break;
        lua_rawgeti(L, -1, 1);
    }
    lua_settop(L, 1);
    dm_tensor *t = dm_bind_newtensor_named(L, dt, nd, shape, "tensor");
    fill_from_table(L, 1, t, 0, path, &pos);
    return 1;
}

/* ---- shape queries ------------------------------------------------------------- */

static void push_shape(lua_State *L, const dm_tensor *t)
{
    lua_createtable(L, t->ndim, 0);
    for (int i = 0; i < t->ndim; i++) {
        lua_pushinteger(L, (lua_Integer)t->shape[i]);
        lua_rawseti(L, -2, i + 1);
    }
}

static int l_shape(lua_State *L)
{
    push_shape(L, self_tensor(L, "shape"));
    return 1;
}

static int l_size(lua_State *L)
{
    dm_tensor *t = self_tensor(L, "size");
    if (lua_isnoneornil(L, 2)) {
        push_shape(L, t);
        return 1;
    }
    lua_pushinteger(L, (lua_Integer)t->shape[check_dim(L, 2, t, "size")]);
    return 1;
}

static int l_dim(lua_State *L)
{
    lua_pushinteger(L, self_tensor(L, "dim")->ndim);
    return 1;
}

static int l_numel(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)dm_tensor_numel(self_tensor(L, "numel")));
    return 1;
}

static int l_dtype(lua_State *L)
{
    lua_pushstring(L, dm_dtype_name(self_tensor(L, "dtype")->dtype));
    return 1;
}

static int l_is_contiguous(lua_State *L)
{
    lua_pushboolean(L, dm_tensor_is_contiguous(self_tensor(L, "is_contiguous")));
    return 1;
}

/* ---- elements ------------------------------------------------------------------ */

static void push_elem(lua_State *L, const dm_tensor *t, int64_t off)
{
    if (t->dtype == DM_I32)
        lua_pushinteger(L, (lua_Integer)dm_tensor_get_at(t, off));
    else
        lua_pushnumber(L, dm_tensor_get_at(t, off));
}

/* Offset of the element whose 1-based indices are at first..last. */
static int64_t elem_offset(lua_State *L, const dm_tensor *t, int first, int last, const char *fn)
{
    int64_t idx[DM_MAX_DIMS], off;
    dm_error err;
    char arg[32];
    int n = last - first + 1;
    if (n != t->ndim) {
        char sb[160];
        dm_bind_errorf(L, "%s: %d indices given for a tensor of shape %s, expected %d", fn, n < 0 ? 0 : n,
                   dm_tensor_shape_str(t, sb, sizeof sb), t->ndim);
    }
    for (int i = 0; i < n; i++) {
        snprintf(arg, sizeof arg, "index %d", i + 1);
        idx[i] = dm_bind_check_int(L, first + i, fn, arg) - 1;
    }
    if (dm_tensor_offset(t, n, idx, &off, fn, &err)) dm_bind_error(L, &err);
    return off;
}

static void set_elem(lua_State *L, dm_tensor *t, int64_t off, double v, const char *fn)
{
    dm_error err;
    if (t->dtype == DM_I32 && dm_tensor_check_int32_value(v, fn, &err)) dm_bind_error(L, &err);
    dm_tensor_set_at(t, off, v);
}

static int l_get(lua_State *L)
{
    dm_tensor *t = self_tensor(L, "get");
    push_elem(L, t, elem_offset(L, t, 2, lua_gettop(L), "get"));
    return 1;
}

/* t:set(v, i, j, ...) -> t */
static int l_set(lua_State *L)
{
    dm_tensor *t = self_tensor(L, "set");
    double v = check_num(L, 2, "set", "value");
    set_elem(L, t, elem_offset(L, t, 3, lua_gettop(L), "set"), v, "set");
    lua_settop(L, 1);
    return 1;
}

static int l_fill(lua_State *L)
{
    dm_error err;
    dm_tensor *t = self_tensor(L, "fill");
    double v = check_num(L, 2, "fill", "value");
    if (t->dtype == DM_I32 && dm_tensor_check_int32_value(v, "fill", &err)) dm_bind_error(L, &err);
    dm_tensor_fill(t, v);
    lua_settop(L, 1);
    return 1;
}

static int l_zero_(lua_State *L)
{
    dm_tensor_fill(self_tensor(L, "zero_"), 0);
    lua_settop(L, 1);
    return 1;
}

/* ---- views and copies ---------------------------------------------------------------- */

static int reshape_impl(lua_State *L, const char *fn, int must_view)
{
    int64_t shape[DM_MAX_DIMS];
    dm_error err;
    dm_tensor *t = self_tensor(L, fn);
    int nd = read_shape(L, 2, lua_gettop(L), fn, shape);
    lua_settop(L, 1);
    if (!must_view && !dm_tensor_is_contiguous(t)) {
        /* reshape of a strided view: copy first (as PyTorch does). */
        dm_tensor *c = dm_bind_newempty(L);
        if (dm_tensor_clone(c, t, &err)) dm_bind_error(L, &err);
        t = c;
    }
    int src = lua_gettop(L);
    dm_tensor *v = dm_bind_newempty(L);
    dm_bind_shareowner(L, src, -1);
    if (dm_tensor_reshape(v, t, nd, shape, fn, &err)) dm_bind_error(L, &err);
    return 1;
}

static int l_reshape(lua_State *L) { return reshape_impl(L, "reshape", 0); }
static int l_view(lua_State *L) { return reshape_impl(L, "view", 1); }

/* t:transpose() (2-d) or t:transpose(d1, d2). */
static int l_transpose(lua_State *L)
{
    dm_tensor *t = self_tensor(L, "transpose");
    int d0 = 0, d1 = 1;
    if (lua_isnoneornil(L, 2)) {
        if (t->ndim != 2)
            dm_bind_errorf(L, "transpose: expected a 2-d tensor or two dimensions, got a %d-d tensor", t->ndim);
    } else {
        d0 = check_dim(L, 2, t, "transpose");
        d1 = check_dim(L, 3, t, "transpose");
    }
#define CALL(v, e) dm_tensor_transpose(v, t, d0, d1, e)
    PUSH_VIEW(L, 1, CALL);
#undef CALL
    return 1;
}

/* t:narrow(dim, start, len): start is 1-based. */
static int l_narrow(lua_State *L)
{
    dm_tensor *t = self_tensor(L, "narrow");
    int d = check_dim(L, 2, t, "narrow");
    int64_t start = dm_bind_check_int(L, 3, "narrow", "start");
    int64_t len = dm_bind_check_int(L, 4, "narrow", "length");
#define CALL(v, e) dm_tensor_narrow(v, t, d, start - 1, len, e)
    PUSH_VIEW(L, 1, CALL);
#undef CALL
    return 1;
}

static int l_select(lua_State *L)
{
    dm_tensor *t = self_tensor(L, "select");
    int d = check_dim(L, 2, t, "select");
    int64_t i = dm_bind_check_int(L, 3, "select", "index");
#define CALL(v, e) dm_tensor_select(v, t, d, i - 1, e)
    PUSH_VIEW(L, 1, CALL);
#undef CALL
    return 1;
}

static int l_clone(lua_State *L)
{
    dm_error err;
    dm_tensor *t = self_tensor(L, "clone");
    dm_tensor *c = dm_bind_newempty(L);
    if (dm_tensor_clone(c, t, &err)) dm_bind_error(L, &err);
    return 1;
}

static int l_contiguous(lua_State *L)
{
    dm_tensor *t = self_tensor(L, "contiguous");
    if (dm_tensor_is_contiguous(t)) {
        lua_settop(L, 1);
        return 1;
    }
    return l_clone(L);
}

/* t:copy(src) -> t (shapes must match). */
static int l_copy(lua_State *L)
{
    dm_error err;
    dm_tensor *t = self_tensor(L, "copy");
    dm_tensor *s = dm_bind_checktensor(L, 2, "copy", "src");
    if (dm_tensor_copy(t, s, &err)) dm_bind_error(L, &err);
    lua_settop(L, 1);
    return 1;
}

static int to_dtype(lua_State *L, const char *fn, dm_dtype dt)
{
    dm_error err;
    dm_tensor *t = self_tensor(L, fn);
    dm_tensor *c = dm_bind_newempty(L);
    if (dm_tensor_to_dtype(c, t, dt, &err)) dm_bind_error(L, &err);
    return 1;
}

static int l_float(lua_State *L) { return to_dtype(L, "float", DM_F32); }
static int l_int(lua_State *L) { return to_dtype(L, "int", DM_I32); }

/* ---- element-wise arithmetic -------------------------------------------------------------- */

static int binary_impl(lua_State *L, const char *fn, dm_binop op, int inplace)
{
    dm_error err;
    dm_tensor *a = self_f32(L, fn);
    dm_tensor *b = dm_bind_testtensor(L, 2);
    if (!b && lua_type(L, 2) != LUA_TNUMBER)
        dm_bind_errorf(L, "%s: argument other: expected Tensor or number, got %s", fn, dm_bind_typename(L, 2));
    if (b) b = dm_bind_checkf32(L, 2, fn, "other");
    dm_tensor *out = a;
    if (!inplace) out = dm_bind_newempty(L);
    int rc = b ? dm_tensor_binary(out, a, b, op, fn, &err)
               : dm_tensor_binary_scalar(out, a, lua_tonumber(L, 2), op, 0, fn, &err);
    if (rc) dm_bind_error(L, &err);
    if (inplace) lua_settop(L, 1);
    return 1;
}

static int l_add(lua_State *L) { return binary_impl(L, "add", DM_ADD, 0); }
static int l_sub(lua_State *L) { return binary_impl(L, "sub", DM_SUB, 0); }
static int l_mul(lua_State *L) { return binary_impl(L, "mul", DM_MUL, 0); }
static int l_div(lua_State *L) { return binary_impl(L, "div", DM_DIV, 0); }
static int l_add_(lua_State *L) { return binary_impl(L, "add_", DM_ADD, 1); }
static int l_sub_(lua_State *L) { return binary_impl(L, "sub_", DM_SUB, 1); }
static int l_mul_(lua_State *L) { return binary_impl(L, "mul_", DM_MUL, 1); }
static int l_div_(lua_State *L) { return binary_impl(L, "div_", DM_DIV, 1); }

/* Metamethods: either operand may be a number (2 - t, 2 * t). */
static int arith_meta(lua_State *L, const char *fn, dm_binop op)
{
    dm_error err;
    dm_tensor *a = dm_bind_testtensor(L, 1), *b = dm_bind_testtensor(L, 2);
    if (a && (b || lua_type(L, 2) == LUA_TNUMBER)) {
        lua_settop(L, 2);
        return binary_impl(L, fn, op, 0);
    }
    if (!a && lua_type(L, 1) != LUA_TNUMBER)
        dm_bind_errorf(L, "%s: argument 1: expected Tensor or number, got %s", fn, dm_bind_typename(L, 1));
    if (!b) dm_bind_errorf(L, "%s: argument 2: expected Tensor or number, got %s", fn, dm_bind_typename(L, 2));
    b = dm_bind_checkf32(L, 2, fn, "2");
    dm_tensor *out = dm_bind_newempty(L);
    if (dm_tensor_binary_scalar(out, b, lua_tonumber(L, 1), op, 1, fn, &err)) dm_bind_error(L, &err);
    return 1;
}

static int m_add(lua_State *L) { return arith_meta(L, "add", DM_ADD); }
static int m_sub(lua_State *L) { return arith_meta(L, "sub", DM_SUB); }
static int m_mul(lua_State *L) { return arith_meta(L, "mul", DM_MUL); }
static int m_div(lua_State *L) { return arith_meta(L, "div", DM_DIV); }

static int unary_impl(lua_State *L, const char *fn, dm_unop op, int inplace)
{
    dm_error err;
    dm_tensor *a = self_f32(L, fn);
    double p1 = 0, p2 = 0;
    if (op == DM_POW) p1 = check_num(L, 2, fn, "exponent");
    if (op == DM_CLAMP) {
        /* nil bounds are open: clamp(0) or clamp(nil, 1). */
        p1 = lua_isnoneornil(L, 2) ? -HUGE_VAL : check_num(L, 2, fn, "min");
        p2 = lua_isnoneornil(L, 3) ? HUGE_VAL : check_num(L, 3, fn, "max");
    }
    dm_tensor *out = a;
    if (!inplace) out = dm_bind_newempty(L);
    if (dm_tensor_unary(out, a, op, p1, p2, fn, &err)) dm_bind_error(L, &err);
    if (inplace) lua_settop(L, 1);
    return 1;
}

#define UNARY(name, op)                                                          \
    static int l_##name(lua_State *L) { return unary_impl(L, #name, op, 0); }    \
    static int l_##name##_(lua_State *L) { return unary_impl(L, #name "_", op, 1); }
UNARY(neg, DM_NEG)
UNARY(exp, DM_EXP)
UNARY(log, DM_LOG)
UNARY(tanh, DM_TANH)
UNARY(sigmoid, DM_SIGMOID)
UNARY(sqrt, DM_SQRT)
UNARY(abs, DM_ABS)
UNARY(pow, DM_POW)
UNARY(clamp, DM_CLAMP)
#undef UNARY

static int m_unm(lua_State *L)
{
    lua_settop(L, 1);
    return unary_impl(L, "unm", DM_NEG, 0);
}

/* ---- reductions ---------------------------------------------------------------------- */

/* t:sum() -> number; t:sum(dim [, keepdim]) -> tensor. Likewise mean and
 * norm. max/min: t:max() -> value, flat 1-based index of the first
 * maximum; t:max(dim [, keepdim]) -> values, indices (int32, 1-based). */
static int reduce_impl(lua_State *L, const char *fn, dm_redop op)
{
    dm_error err;
    dm_tensor *a = self_f32(L, fn);
    if (lua_isnoneornil(L, 2)) {
        double v;
        int64_t i = 0;
        if (dm_tensor_reduce_all(a, op, &v, &i, &err)) dm_bind_error(L, &err);
        lua_pushnumber(L, v);
        if (op == DM_MAX || op == DM_MIN) {
            lua_pushinteger(L, (lua_Integer)(i + 1));
            return 2;
        }
        return 1;
    }
    int d = check_dim(L, 2, a, fn);
    int keep = opt_bool(L, 3);
    int withidx = op == DM_MAX || op == DM_MIN;
    dm_tensor *v = dm_bind_newempty(L);
    dm_tensor *ix = withidx ? dm_bind_newempty(L) : NULL;
    if (dm_tensor_reduce_dim(v, ix, a, op, d, keep, 1, &err)) dm_bind_error(L, &err);
    return withidx ? 2 : 1;
}

static int l_sum(lua_State *L) { return reduce_impl(L, "sum", DM_SUM); }
static int l_mean(lua_State *L) { return reduce_impl(L, "mean", DM_MEAN); }
static int l_max(lua_State *L) { return reduce_impl(L, "max", DM_MAX); }
static int l_min(lua_State *L) { return reduce_impl(L, "min", DM_MIN); }
static int l_norm(lua_State *L) { return reduce_impl(L, "norm", DM_NORM); }

/* t:argmax() -> flat 1-based index (integer); t:argmax(dim [, keepdim]) ->
 * int32 tensor of 1-based indices. */
static int l_argmax(lua_State *L)
{
    dm_error err;
    dm_tensor *a = self_f32(L, "argmax");
    if (lua_isnoneornil(L, 2)) {
        double v;
        int64_t i = 0;
        if (dm_numel_zero(a)) dm_bind_errorf(L, "argmax: cannot reduce an empty tensor (0 elements)");
        if (dm_tensor_reduce_all(a, DM_MAX, &v, &i, &err)) dm_bind_error(L, &err);
        lua_pushinteger(L, (lua_Integer)(i + 1));
        return 1;
    }
    int d = check_dim(L, 2, a, "argmax");
    int keep = opt_bool(L, 3);
    dm_tensor *v = dm_bind_newempty(L);
    dm_tensor *ix = dm_bind_newempty(L);
    if (dm_tensor_reduce_dim(v, ix, a, DM_MAX, d, keep, 1, &err)) dm_bind_error(L, &err);
    return 1; /* ix is on top */
}

/* softmax/log_softmax over the last dimension; an explicit dim must name
 * it (-1 or ndim). */
static int softmax_impl(lua_State *L, const char *fn, int log_space)
{
    dm_error err;
    dm_tensor *a = self_f32(L, fn);
    if (!lua_isnoneornil(L, 2) && a->ndim > 0) {
        int d = check_dim(L, 2, a, fn);
        if (d != a->ndim - 1)
            dm_bind_errorf(L, "%s: only the last dimension is supported (got dimension %d of a %d-d tensor)",
                       fn, d + 1, a->ndim);
    }
    dm_tensor *out = dm_bind_newempty(L);
    if (dm_tensor_softmax(out, a, log_space, &err)) dm_bind_error(L, &err);
    return 1;
}

static int l_softmax(lua_State *L) { return softmax_impl(L, "softmax", 0); }
static int l_log_softmax(lua_State *L) { return softmax_impl(L, "log_softmax", 1); }

/* t:topk(k) -> values, indices (int32, 1-based), along the last dimension,
 * sorted descending. */
static int l_topk(lua_State *L)
{
    dm_error err;
    dm_tensor *a = self_f32(L, "topk");
    int64_t k = dm_bind_check_int(L, 2, "topk", "k");
    dm_tensor *v = dm_bind_newempty(L);
    dm_tensor *ix = dm_bind_newempty(L);
    if (dm_tensor_topk(v, ix, a, k, 1, &err)) dm_bind_error(L, &err);
    return 2;
}

static int l_matmul(lua_State *L)
{
    dm_error err;
    dm_tensor *a = dm_bind_checkf32(L, 1, "matmul", "1");
    dm_tensor *b = dm_bind_checkf32(L, 2, "matmul", "2");
    dm_tensor *out = dm_bind_newempty(L);
    if (dm_tensor_matmul(out, a, b, &err)) dm_bind_error(L, &err);
    return 1;
}

/* dm.allclose(a, b [, rtol=1e-5 [, atol=1e-8]]): PyTorch's test
 * |a - b| <= atol + rtol * |b|. */
static int l_allclose(lua_State *L)
{
    dm_error err;
    dm_tensor *a = dm_bind_checktensor(L, 1, "allclose", "1");
    dm_tensor *b = dm_bind_checktensor(L, 2, "allclose", "2");
    double rtol = lua_isnoneornil(L, 3) ? 1e-5 : check_num(L, 3, "allclose", "rtol");
    double atol = lua_isnoneornil(L, 4) ? 1e-8 : check_num(L, 4, "allclose", "atol");
    int r = 0;
    if (dm_tensor_allclose(a, b, rtol, atol, &r, &err)) dm_bind_error(L, &err);
    lua_pushboolean(L, r);
    return 1;
}

/* ---- conversion to Lua ------------------------------------------------------------------- */

static void push_table(lua_State *L, const dm_tensor *t, int d, int64_t off)
{
    if (d == t->ndim) {
        push_elem(L, t, off);
        return;
    }
    luaL_checkstack(L, 3, "totable: too deep");
    lua_createtable(L, (int)(t->shape[d] < 1 << 24 ? t->shape[d] : 0), 0);
    for (int64_t i = 0; i < t->shape[d]; i++) {
        push_table(L, t, d + 1, off + i * t->stride[d]);
        lua_rawseti(L, -2, (lua_Integer)(i + 1));
    }
}

static int l_totable(lua_State *L)
{
    dm_tensor *t = self_tensor(L, "totable");
    push_table(L, t, 0, (int64_t)t->offset);
    return 1;
}

/* Printing follows PyTorch's summarising rule: above 1000 elements, each
 * dimension longer than 6 shows its first and last 3 entries around "...".
 * Numbers share one format chosen from the whole tensor: integers when
 * every value is whole, fixed point with 4 decimals, or scientific when
 * magnitudes are large or tiny. A 1-d tensor prints as one row; more than
 * 2 dimensions print as (i,j,.,.) slices, Torch7 style. */
#define PRINT_EDGE 3
#define PRINT_THRESHOLD 1000

typedef struct printer {
    const dm_tensor *t;
    luaL_Buffer *b;
    const char *fmt;
    int width;
    int summarise;
} printer;

static int fmt_value(const printer *p, char *buf, size_t n, int64_t off)
{
    double v = dm_tensor_get_at(p->t, off);
    if (p->t->dtype == DM_I32) return snprintf(buf, n, "%d", (int)v);
    if (isnan(v)) return snprintf(buf, n, "nan");
    if (isinf(v)) return snprintf(buf, n, v > 0 ? "inf" : "-inf");
    return snprintf(buf, n, p->fmt, v);
}

/* Calls visit on the displayed indices of dimension d (skipping the middle
 * when summarising): -1 marks the "..." position. */
static int shown(const printer *p, int d, int64_t k, int64_t *i)
{
    int64_t n = p->t->shape[d];
    if (!p->summarise || n <= 2 * PRINT_EDGE) {
        *i = k;
        return k < n;
    }
    if (k < PRINT_EDGE) *i = k;
    else if (k == PRINT_EDGE) *i = -1;
    else if (k <= 2 * PRINT_EDGE) *i = n - (2 * PRINT_EDGE + 1 - k);
    else return 0;
    return 1;
}

static void print_row(printer *p, int64_t off, int d)
{
    char buf[64];
    int64_t i;
    for (int64_t k = 0; shown(p, d, k, &i); k++) {
        if (i < 0) {
            luaL_addstring(p->b, " ...");
            continue;
        }
        int w = fmt_value(p, buf, sizeof buf, off + i * p->t->stride[d]);
        luaL_addchar(p->b, ' ');
        for (; w < p->width; w++) luaL_addchar(p->b, ' ');
        luaL_addstring(p->b, buf);
    }
    luaL_addchar(p->b, '\n');
}

static void print_matrix(printer *p, int64_t off, int d)
{
    int64_t i;
    for (int64_t k = 0; shown(p, d, k, &i); k++) {
        if (i < 0) luaL_addstring(p->b, " ...\n");
        else print_row(p, off + i * p->t->stride[d], d + 1);
    }
}

static void print_slices(printer *p, int64_t off, int d, int64_t *idx)
{
    const dm_tensor *t = p->t;
    if (d == t->ndim - 2) {
        luaL_addchar(p->b, '(');
        for (int j = 0; j < t->ndim; j++) {
            if (j) luaL_addchar(p->b, ',');
            if (j < d) {
                char nb[24];
                snprintf(nb, sizeof nb, "%" PRId64, idx[j] + 1);
                luaL_addstring(p->b, nb);
            } else {
                luaL_addchar(p->b, '.');
            }
        }
        luaL_addstring(p->b, ") =\n");
        print_matrix(p, off, d);
        luaL_addchar(p->b, '\n');
        return;
    }
    int64_t i;
    for (int64_t k = 0; shown(p, d, k, &i); k++) {
        if (i < 0) {
            luaL_addstring(p->b, "...\n\n");
            continue;
        }
        idx[d] = i;
        print_slices(p, off + i * t->stride[d], d + 1, idx);
    }
}

/* Widest formatted value among the displayed ones (all of them unless
 * summarising, which is cheap enough for the format choice too). */
static void choose_format(printer *p)
{
    const dm_tensor *t = p->t;
    char buf[64];
    double maxabs = 0, minabs = HUGE_VAL;
    int whole = 1;
    dm_iter it;
    for (dm_iter_init(&it, t); it.pos < it.n; dm_iter_next(&it)) {
        double v = dm_tensor_get_at(t, it.off);
        if (!isfinite(v)) continue;
        double a = fabs(v);
        if (a > maxabs) maxabs = a;
        if (a > 0 && a < minabs) minabs = a;
        if (v != floor(v)) whole = 0;
    }
    if (t->dtype == DM_I32 || (whole && maxabs < 1e9)) p->fmt = "%.0f";
    else if (maxabs >= 1e5 || minabs < 1e-4) p->fmt = "%.4e";
    else p->fmt = "%.4f";
    p->width = 1;
    for (dm_iter_init(&it, t); it.pos < it.n; dm_iter_next(&it)) {
        int w = fmt_value(p, buf, sizeof buf, it.off);
        if (w > p->width) p->width = w;
    }
}

static int l_tostring(lua_State *L)
{
    char sb[160];
    dm_tensor *t = dm_bind_testtensor(L, 1);
    if (!t) dm_bind_errorf(L, "tostring: argument self: expected Tensor, got %s", dm_bind_typename(L, 1));
    if (!t->storage) {
        lua_pushliteral(L, "[Tensor (freed)]");
        return 1;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    printer p = {t, &b, "%.4f", 1, dm_tensor_numel(t) > PRINT_THRESHOLD};
    if (dm_tensor_numel(t) > 0) {
        choose_format(&p);
        int64_t idx[DM_MAX_DIMS] = {0};
        if (t->ndim == 0) {
            char buf[64];
            fmt_value(&p, buf, sizeof buf, (int64_t)t->offset);
            luaL_addstring(&b, buf);
            luaL_addchar(&b, '\n');
        } else if (t->ndim == 1) {
            print_row(&p, (int64_t)t->offset, 0);
        } else if (t->ndim == 2) {
            print_matrix(&p, (int64_t)t->offset, 0);
        } else {
            print_slices(&p, (int64_t)t->offset, 0, idx);
        }
    }
    luaL_addstring(&b, "[Tensor ");
    luaL_addstring(&b, dm_dtype_name(t->dtype));
    luaL_addchar(&b, ' ');
    luaL_addstring(&b, dm_tensor_shape_str(t, sb, sizeof sb));
    luaL_addchar(&b, ']');
    luaL_pushresult(&b);
    return 1;
}

/* ---- metatable ------------------------------------------------------------------------------ */

static int m_gc(lua_State *L)
{
    dm_tensor *t = dm_bind_testtensor(L, 1);
    if (t) dm_tensor_release(t);
    return 0;
}

/* t[i]: on a 1-d tensor the number at 1-based i, on an n-d tensor the view
 * t:select(1, i); string keys find methods (upvalue 1). */
static int m_index(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TNUMBER) {
        dm_tensor *t = self_tensor(L, "index");
        if (t->ndim == 0) dm_bind_errorf(L, "index: cannot index a scalar (0-d) tensor");
        if (t->ndim == 1) {
            int64_t off = elem_offset(L, t, 2, 2, "index");
            push_elem(L, t, off);
            return 1;
        }
        int64_t i = dm_bind_check_int(L, 2, "index", "index");
#define CALL(v, e) dm_tensor_select(v, t, 0, i - 1, e)
        PUSH_VIEW(L, 1, CALL);
#undef CALL
        return 1;
    }
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
    return 1;
}

/* t[i] = v: sets the element of a 1-d tensor, or fills (number) / copies
 * into (tensor) the slice t:select(1, i) of an n-d tensor. */
static int m_newindex(lua_State *L)
{
    dm_error err;
    dm_tensor *t = self_tensor(L, "newindex");
    if (lua_type(L, 2) != LUA_TNUMBER)
        dm_bind_errorf(L, "newindex: cannot set field %s of a Tensor (expected an integer index)",
                   lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : dm_bind_typename(L, 2));
    if (t->ndim == 0) dm_bind_errorf(L, "newindex: cannot index a scalar (0-d) tensor");
    if (t->ndim == 1) {
        int64_t off = elem_offset(L, t, 2, 2, "newindex");
        set_elem(L, t, off, check_num(L, 3, "newindex", "value"), "newindex");
        return 0;
    }
    int64_t i = dm_bind_check_int(L, 2, "newindex", "index");
    dm_tensor *src = dm_bind_testtensor(L, 3);
    if (!src && lua_type(L, 3) != LUA_TNUMBER)
        dm_bind_errorf(L, "newindex: argument value: expected Tensor or number, got %s", dm_bind_typename(L, 3));
    dm_tensor v = {0};
    if (dm_tensor_select(&v, t, 0, i - 1, &err)) dm_bind_error(L, &err);
    int rc = 0;
    if (src) {
        if (!src->storage) {
            dm_tensor_release(&v);
            dm_bind_errorf(L, "newindex: argument value: tensor has been freed (closed)");
        }
        rc = dm_tensor_copy(&v, src, &err);
    } else if (t->dtype == DM_I32) {
        rc = dm_tensor_check_int32_value(lua_tonumber(L, 3), "newindex", &err);
        if (!rc) dm_tensor_fill(&v, lua_tonumber(L, 3));
    } else {
        dm_tensor_fill(&v, lua_tonumber(L, 3));
    }
    dm_tensor_release(&v);
    if (rc) dm_bind_error(L, &err);
    return 0;
}

static int m_len(lua_State *L)
{
    dm_tensor *t = self_tensor(L, "len");
    lua_pushinteger(L, t->ndim ? (lua_Integer)t->shape[0] : 0);
    return 1;
}

static int l_free(lua_State *L)
{
    dm_tensor *t = dm_bind_testtensor(L, 1);
    if (!t) dm_bind_errorf(L, "free: argument self: expected Tensor, got %s", dm_bind_typename(L, 1));
    dm_tensor_release(t);
    return 0;
}

static const luaL_Reg tensor_methods[] = {
    {"shape", l_shape}, {"size", l_size}, {"dim", l_dim}, {"numel", l_numel},
    {"dtype", l_dtype}, {"is_contiguous", l_is_contiguous},
    {"get", l_get}, {"set", l_set}, {"fill", l_fill}, {"fill_", l_fill}, {"zero_", l_zero_},
    {"reshape", l_reshape}, {"view", l_view}, {"transpose", l_transpose}, {"t", l_transpose},
    {"narrow", l_narrow}, {"select", l_select}, {"clone", l_clone}, {"contiguous", l_contiguous},
    {"copy", l_copy}, {"float", l_float}, {"int", l_int},
    {"add", l_add}, {"sub", l_sub}, {"mul", l_mul}, {"div", l_div},
    {"add_", l_add_}, {"sub_", l_sub_}, {"mul_", l_mul_}, {"div_", l_div_},
    {"neg", l_neg}, {"neg_", l_neg_}, {"exp", l_exp}, {"exp_", l_exp_}, {"log", l_log},
    {"log_", l_log_}, {"tanh", l_tanh}, {"tanh_", l_tanh_}, {"sigmoid", l_sigmoid},
    {"sigmoid_", l_sigmoid_}, {"sqrt", l_sqrt}, {"sqrt_", l_sqrt_}, {"abs", l_abs},
    {"abs_", l_abs_}, {"pow", l_pow}, {"pow_", l_pow_}, {"clamp", l_clamp}, {"clamp_", l_clamp_},
    {"sum", l_sum}, {"mean", l_mean}, {"max", l_max}, {"min", l_min}, {"norm", l_norm},
    {"argmax", l_argmax}, {"softmax", l_softmax}, {"log_softmax", l_log_softmax},
    {"topk", l_topk}, {"matmul", l_matmul}, {"totable", l_totable}, {"tostring", l_tostring},
    {"free", l_free},
    {NULL, NULL}};

static const luaL_Reg tensor_meta[] = {
    {"__gc", m_gc}, {"__close", m_gc}, {"__tostring", l_tostring}, {"__newindex", m_newindex},
    {"__len", m_len}, {"__add", m_add}, {"__sub", m_sub}, {"__mul", m_mul}, {"__div", m_div},
    {"__unm", m_unm},
    {NULL, NULL}};

/* dm.Tensor(sizes... [, dtype]) is dm.zeros; dm.Tensor also holds the
 * method table (dm.Tensor.add(a, b)). */
static int l_Tensor_call(lua_State *L)
{
    lua_remove(L, 1);
    return l_zeros(L);
}

static const luaL_Reg module_funcs[] = {
    {"zeros", l_zeros}, {"ones", l_ones}, {"full", l_full}, {"rand", l_rand},
    {"randn", l_randn}, {"arange", l_arange}, {"tensor", l_tensor},
    {"matmul", l_matmul}, {"allclose", l_allclose}, {"softmax", l_softmax},
    {"log_softmax", l_log_softmax},
    {NULL, NULL}};

void dm_open_tensor(lua_State *L)
{
    luaL_newmetatable(L, DM_TENSOR_MT);
    luaL_setfuncs(L, tensor_meta, 0);
    lua_newtable(L); /* methods */
    luaL_setfuncs(L, tensor_methods, 0);
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, m_index, 1);
    lua_setfield(L, -3, "__index");
    /* dm.Tensor: the methods, callable as a constructor. */
    lua_newtable(L);
    lua_pushcfunction(L, l_Tensor_call);
    lua_setfield(L, -2, "__call");
    lua_setmetatable(L, -2);
    lua_setfield(L, -3, "Tensor");
    lua_pop(L, 1); /* metatable */
    luaL_setfuncs(L, module_funcs, 0);
    dm_open_random(L);
}
