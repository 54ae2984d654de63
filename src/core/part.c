/* part.c: the part registry and the entry helpers every part uses
 * (part.h). The registry is parts.def expanded into a table, so a new kind
 * is one line there and nothing here. */
#include "core/part.h"

#include <stdio.h>
#include <string.h>

#define DM_PART(name, ops) &ops,
static const dm_part_ops *const registry[] = {
#include "core/parts.def"
};
#undef DM_PART

const dm_part_ops *dm_part_find(const char *kind, dm_part_role role)
{
    for (size_t i = 0; kind && i < sizeof registry / sizeof registry[0]; i++)
        if (registry[i]->role == role &&
            (strcmp(registry[i]->kind, kind) == 0 ||
             (registry[i]->alias && strcmp(registry[i]->alias, kind) == 0)))
            return registry[i];
    return NULL;
}

const char *dm_part_kinds(dm_part_role role, char *buf, size_t n)
{
    size_t used = 0;
    if (n) buf[0] = '\0';
    for (int alias = 0; alias < 2; alias++)
        for (size_t i = 0; i < sizeof registry / sizeof registry[0]; i++) {
            const char *name = alias ? registry[i]->alias : registry[i]->kind;
            if (registry[i]->role != role || !name) continue;
            int k = snprintf(buf + used, n > used ? n - used : 0, "%s%s", used ? ", " : "", name);
            if (k > 0) used += (size_t)k;
        }
    return buf;
}

int dm_part_init(dm_part *p, const dm_part_ops *ops, const char *name, const dm_part_cfg *cfg,
                 dm_error *err)
{
    memset(p, 0, sizeof *p);
    if (strlen(name) >= DM_PART_NAME_MAX) return dm_fail(err, "part: name '%s' is too long", name);
    p->ops = ops;
    strcpy(p->name, name);
    p->cfg = *cfg;
    p->p0 = p->a0 = -1;
    if (ops->create && ops->create(p, err) != 0) {
        p->ops = NULL;
        return -1;
    }
    return 0;
}

void dm_part_free(dm_part *p)
{
    if (p->ops && p->ops->destroy) p->ops->destroy(p);
    p->state = NULL;
    p->ops = NULL;
}

int dm_part_add(dm_part *p, dm_arena *a, int is_param, const char *what, int ndim, int64_t d0,
                int64_t d1, unsigned flags, dm_error *err)
{
    if (!a) return 0;
    char name[DM_ARENA_NAME_MAX];
    int k = snprintf(name, sizeof name, "%s%s%s", p->name, p->name[0] ? "." : "", what);
    if (k < 0 || (size_t)k >= sizeof name)
        return dm_fail(err, "part %s: entry name '%s' is too long", p->name, what);
    int64_t shape[2] = {d0, d1};
    int i = dm_arena_add(a, name, ndim, shape, err);
    if (i < 0) return -1;
    a->entries[i].flags = flags | (is_param && p->cfg.frozen ? DM_ENTRY_FROZEN : 0);
    int *first = is_param ? &p->p0 : &p->a0, *count = is_param ? &p->np : &p->na;
    if (*first < 0) {
        *first = i;
        *count = 0;
    }
    (*count)++;
    return i - *first;
}

float *dm_part_param(const dm_part *p, const dm_arena *params, int k)
{
    return dm_arena_ptr(params, p->p0 + k);
}

float *dm_part_grad(const dm_part *p, const dm_arena *grads, int k)
{
    const int i = p->p0 + k;
    return grads->entries[i].flags & (DM_ENTRY_FROZEN | DM_ENTRY_BUFFER) ? NULL
                                                                         : dm_arena_ptr(grads, i);
}

float *dm_part_act(const dm_part *p, const dm_arena *acts, int k)
{
    return dm_arena_ptr(acts, p->a0 + k);
}
