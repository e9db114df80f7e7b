#include "parley_keyring.h"

#include <errno.h>

#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>

#define PARLEY_KEY_SPEC_SESSION_KEYRING (-3)
#define PARLEY_KEYCTL_GET_KEYRING_ID 0
#define PARLEY_KEYCTL_REVOKE 3
#define PARLEY_KEYCTL_SETPERM 5
#define PARLEY_KEYCTL_UNLINK 9
#define PARLEY_KEYCTL_SEARCH 10
#define PARLEY_KEYCTL_READ 11
#define PARLEY_KEYCTL_SET_TIMEOUT 15

int32_t parley_keyring_add_session(const char *description, const void *payload, size_t length) {
    /* add_key(2) on KEY_SPEC_SESSION_KEYRING would make a process without a session keyring join a new,
     * anonymous one that dies with it. Resolving the id first without creating (which installs the user's
     * default session keyring, as every later lookup does) puts the key where the next command finds it. */
    long ring = syscall(SYS_keyctl, PARLEY_KEYCTL_GET_KEYRING_ID, PARLEY_KEY_SPEC_SESSION_KEYRING, 0);
    if (ring < 0) return -1;
    return (int32_t)syscall(SYS_add_key, "user", description, payload, length, (int32_t)ring);
}

int32_t parley_keyring_search_session(const char *description) {
    return (int32_t)syscall(SYS_keyctl, PARLEY_KEYCTL_SEARCH, PARLEY_KEY_SPEC_SESSION_KEYRING, "user", description, 0);
}

long parley_keyring_read(int32_t key, void *buffer, size_t capacity) {
    return syscall(SYS_keyctl, PARLEY_KEYCTL_READ, key, buffer, capacity);
}

int parley_keyring_set_permissions(int32_t key, uint32_t permissions) {
    return (int)syscall(SYS_keyctl, PARLEY_KEYCTL_SETPERM, key, permissions);
}

int parley_keyring_set_timeout(int32_t key, unsigned int seconds) {
    return (int)syscall(SYS_keyctl, PARLEY_KEYCTL_SET_TIMEOUT, key, seconds);
}

int parley_keyring_revoke(int32_t key) {
    return (int)syscall(SYS_keyctl, PARLEY_KEYCTL_REVOKE, key);
}

int parley_keyring_unlink_session(int32_t key) {
    return (int)syscall(SYS_keyctl, PARLEY_KEYCTL_UNLINK, key, PARLEY_KEY_SPEC_SESSION_KEYRING);
}

int32_t parley_keyring_session_id(void) {
    return (int32_t)syscall(SYS_keyctl, PARLEY_KEYCTL_GET_KEYRING_ID, PARLEY_KEY_SPEC_SESSION_KEYRING, 0);
}

#else

int32_t parley_keyring_add_session(const char *description, const void *payload, size_t length) {
    (void)description; (void)payload; (void)length; errno = ENOSYS; return -1;
}
int32_t parley_keyring_search_session(const char *description) { (void)description; errno = ENOSYS; return -1; }
long parley_keyring_read(int32_t key, void *buffer, size_t capacity) {
    (void)key; (void)buffer; (void)capacity; errno = ENOSYS; return -1;
}
int parley_keyring_set_permissions(int32_t key, uint32_t permissions) { (void)key; (void)permissions; errno = ENOSYS; return -1; }
int parley_keyring_set_timeout(int32_t key, unsigned int seconds) { (void)key; (void)seconds; errno = ENOSYS; return -1; }
int parley_keyring_revoke(int32_t key) { (void)key; errno = ENOSYS; return -1; }
int parley_keyring_unlink_session(int32_t key) { (void)key; errno = ENOSYS; return -1; }
int32_t parley_keyring_session_id(void) { errno = ENOSYS; return -1; }

#endif
