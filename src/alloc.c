/* The allocator uvctx takes its memory from (malloc unless replaced), like
 * libuv's uv_replace_allocator(). */
#include "uvctx-int.h"

static uvctx_malloc_func malloc_fn = malloc;
static uvctx_free_func free_fn = free;

int uvctx_replace_allocator(uvctx_malloc_func malloc_func,
                            uvctx_free_func free_func) {
  if (malloc_func == NULL || free_func == NULL)
    return UV_EINVAL;
  malloc_fn = malloc_func;
  free_fn = free_func;
  return 0;
}

void *uvctx__malloc(size_t size) { return malloc_fn(size); }

void uvctx__free(void *ptr) { free_fn(ptr); }
