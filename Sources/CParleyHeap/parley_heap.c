#include "parley_heap.h"

/* __GLIBC__ comes from glibc's own headers: include one before testing it. */
#if __has_include(<malloc.h>)
#include <malloc.h>
#endif

#if defined(__GLIBC__)

size_t parley_heap_in_use_bytes(void) {
#if __GLIBC_PREREQ(2, 33)
    struct mallinfo2 info = mallinfo2();
    return info.uordblks + info.hblkhd;
#else
    /* mallinfo's fields are ints: they wrap above 2 GiB. */
    struct mallinfo info = mallinfo();
    return (size_t)(unsigned int)info.uordblks + (size_t)(unsigned int)info.hblkhd;
#endif
}

int parley_heap_trim(void) {
    return malloc_trim(0);
}

#else

size_t parley_heap_in_use_bytes(void) {
    return 0;
}

int parley_heap_trim(void) {
    return 0;
}

#endif
