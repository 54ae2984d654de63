/* bind.h: what every Lua binding file of drlmem shares.
 *
 * Only src/bind includes lua.h. Each binding file registers its functions
 * into the module table through one dm_open_<part>(L) function, called by
 * luaopen_drlmem (module.c) with the module table on top of the stack.
 * Userdata get named metatables ("drlmem.Tensor", "drlmem.Memory", ...) so
 * `__name` shows in type errors; one function serves `__gc` and `__close`.
 * Core errors (dm_error) become Lua errors with dm_bind_error. */
#ifndef DM_BIND_H
#define DM_BIND_H

#include <lauxlib.h>
#include <lua.h>

#include "core/common.h"
#include "core/tensor.h"

#define DM_TENSOR_MT "drlmem.Tensor"

/* Raises a Lua error with the core's message; never returns. */
int dm_bind_error(lua_State *L, const dm_error *err);

/* The tensor at idx, or a Lua error "FN: argument ARG: expected Tensor, got
 * TYPE". fn and arg name the caller for the message. */
dm_tensor *dm_bind_checktensor(lua_State *L, int idx, const char *fn, const char *arg);
/* As above, and also requires dtype float32 (error names the dtype found). */
dm_tensor *dm_bind_checkf32(lua_State *L, int idx, const char *fn, const char *arg);
/* As above, and also requires int32. */
dm_tensor *dm_bind_checki32(lua_State *L, int idx, const char *fn, const char *arg);
/* The tensor at idx or NULL when it is not a tensor. */
dm_tensor *dm_bind_testtensor(lua_State *L, int idx);

/* Pushes a new zero-filled contiguous tensor; Lua error on a bad shape. */
dm_tensor *dm_bind_newtensor(lua_State *L, dm_dtype dtype, int ndim, const int64_t *shape);
/* Pushes a tensor userdata taking over *t (t's reference moves to Lua). */
dm_tensor *dm_bind_pushtensor(lua_State *L, dm_tensor *t);
/* Pushes a contiguous float32 view of borrowed memory; the value at
 * owner_idx (a userdata) is kept alive as long as the view exists. */
dm_tensor *dm_bind_pushview(lua_State *L, float *data, int ndim, const int64_t *shape, int owner_idx);

/* Part openers, called in order by luaopen_drlmem with the module on top. */
void dm_open_tensor(lua_State *L);

#endif
