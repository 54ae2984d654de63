/* tensor.c: placeholder until the tensor bindings land. */
#include "bind/bind.h"
void dm_open_tensor(lua_State *L) { (void)L; }
