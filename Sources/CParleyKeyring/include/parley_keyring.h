#ifndef PARLEY_KEYRING_H
#define PARLEY_KEYRING_H

#include <stddef.h>
#include <stdint.h>

/* Thin wrappers over the Linux key-management syscalls (add_key(2), keyctl(2)): Swift cannot call the
 * variadic syscall(2), and libkeyutils is not needed for these few calls. Each returns -1 and sets errno on
 * failure (ENOSYS on systems without the syscalls, e.g. macOS). */

/* add_key("user", description, payload, length, session keyring): the new (or updated) key's serial. A
 * process without a session keyring of its own uses the user's default session keyring (_uid_ses), never a
 * new one that would die with the process. */
int32_t parley_keyring_add_session(const char *description, const void *payload, size_t length);
/* KEYCTL_SEARCH of the session keyring for a "user" key with this description: its serial. */
int32_t parley_keyring_search_session(const char *description);
/* KEYCTL_READ into buffer: the payload's full length (may exceed capacity). */
long parley_keyring_read(int32_t key, void *buffer, size_t capacity);
/* KEYCTL_SETPERM. */
int parley_keyring_set_permissions(int32_t key, uint32_t permissions);
/* KEYCTL_SET_TIMEOUT (seconds; the key expires and is garbage-collected). */
int parley_keyring_set_timeout(int32_t key, unsigned int seconds);
/* KEYCTL_REVOKE. */
int parley_keyring_revoke(int32_t key);
/* KEYCTL_UNLINK from the session keyring. */
int parley_keyring_unlink_session(int32_t key);
/* KEYCTL_GET_KEYRING_ID of the session keyring without creating one: its serial. */
int32_t parley_keyring_session_id(void);

#endif
