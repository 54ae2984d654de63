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
/* Raises a Lua error formatted by vsnprintf (so PRId64, %g, %zu work, which
 * luaL_error's own formatter does not support); never returns. */
int dm_bind_errorf(lua_State *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* As dm_bind_errorf but without the calling Lua line: for errors about a
 * file or its contents, whose message starts with the file's own name. */
int dm_bind_fileerrorf(lua_State *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Type name for messages: a userdata's __name ("drlmem.Memory"), else the
 * Lua type; "no value" for an index past the top of the stack. */
const char *dm_bind_typename(lua_State *L, int idx);

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
/* Pushes an empty tensor userdata (storage NULL, metatable set) for a core
 * function to initialise: create it BEFORE acquiring anything, so that an
 * error leaves nothing to free by hand. */
dm_tensor *dm_bind_newempty(lua_State *L);
/* dm_bind_newtensor with the caller's name in error messages ("zeros: ..."). */
dm_tensor *dm_bind_newtensor_named(lua_State *L, dm_dtype dtype, int ndim, const int64_t *shape,
                                   const char *who);
/* Gives the tensor userdata at dst_idx the owner kept alive by the one at
 * src_idx: call it for every view made of a tensor that may be borrowed. */
void dm_bind_shareowner(lua_State *L, int src_idx, int dst_idx);

/* Part openers, called in order by luaopen_drlmem with the module on top. */
/* ---- option tables and arguments: the one set of readers every binding
 * uses. An option table sits at stack index opts (none or nil: every
 * option takes its default). Errors read "<fn>: option <key>: expected
 * <what>, got <value or type>" and "<fn>: unknown option '<key>' (known:
 * ...)". */
/* Raises when opts is neither none, nil nor a table, or has a key that is
 * not in known (NULL-terminated). */
void dm_bind_check_options(lua_State *L, int opts, const char *fn, const char *const *known);
double dm_bind_opt_number(lua_State *L, int opts, const char *fn, const char *key, double def);
/* required != 0: a missing key is an error ("option <key> is required"). */
int64_t dm_bind_opt_int(lua_State *L, int opts, const char *fn, const char *key, int64_t def,
                        int required);
int dm_bind_opt_bool(lua_State *L, int opts, const char *fn, const char *key, int def);
/* Index of the value in choices (NULL-terminated), or def when absent. */
int dm_bind_opt_enum(lua_State *L, int opts, const char *fn, const char *key,
                     const char *const *choices, int def);
/* Argument idx as an integer ("<fn>: argument <arg>: expected an integer"). */
int64_t dm_bind_check_int(lua_State *L, int idx, const char *fn, const char *arg);

void dm_open_tensor(lua_State *L);
/* dm.manual_seed, dm.get_rng_state/set_rng_state, dm.randperm and
 * dm.Generator (bind/random.c); called by dm_open_tensor. */
void dm_open_random(lua_State *L);
/* The dm.Generator at idx, or NULL when the value is not one. */
dm_rng *dm_bind_testgenerator(lua_State *L, int idx);
void dm_open_yaml(lua_State *L);     /* dm.yaml (yaml.c) */
void dm_open_datautil(lua_State *L); /* dm.datautil (datautil.c) */
void dm_open_nn(lua_State *L);       /* dm.nn layers and cross_entropy (nn.c) */
void dm_open_memory(lua_State *L);   /* dm.Memory (memory.c) */
void dm_open_optim(lua_State *L);    /* dm.optim, dm.clip_grad_norm (optim.c) */
void dm_open_safetensors(lua_State *L); /* dm.save/load_safetensors (safetensors.c) */
void dm_open_json(lua_State *L);     /* dm.json (json.c) */
void dm_open_sys(lua_State *L);      /* dm.clock, dm.isatty, dm.term_width, dm.set_num_threads, dm.write_file (sys.c) */
void dm_open_controller(lua_State *L); /* dm.Controller (controller.c) */
void dm_open_dist(lua_State *L);     /* dm.dist, MPI collectives (dist.c) */

#endif
