#ifndef PARLEY_HEAP_H
#define PARLEY_HEAP_H

#include <stddef.h>

/*
 * The C allocator's accounting and trim, for the relay's MemoryReturnService (glibc's malloc.h
 * is not in Swift's Glibc module).
 */

/* Bytes of heap memory in use by the program: allocated chunks of every arena plus memory-mapped
 * chunks (glibc's mallinfo2: uordblks + hblkhd); 0 with another C library. Walks the free lists of
 * every arena under that arena's lock: cheap next to a trim (no system call), but not free. */
size_t parley_heap_in_use_bytes(void);

/* glibc's malloc_trim(0): returns the free pages of every arena to the system, holding each arena's
 * lock while it works on it. 1 if memory was released, else 0 (always 0 with another C library). */
int parley_heap_trim(void);

#endif
