#ifndef PARLEY_ED25519_H
#define PARLEY_ED25519_H

#include <stddef.h>
#include <stdint.h>

/*
 * Ed25519 signature verification with precomputed tables, for keys that verify many
 * signatures (a sender key's signing key). Public data only: variable time throughout.
 *
 * The check is libsodium 1.0.18's crypto_sign_ed25519_verify_detached (cofactorless, strict):
 * s < L, R not of small order, A canonical and not of small order, and the encoding of
 * s*B - h*A equal to R byte for byte. The caller computes h = SHA-512(R || A || M) mod L.
 */

/* A public key prepared for verification: the decompressed point A0 = (x, y) with x even,
 * as tables of multiples. About 25 KB. Immutable once made, so it may be shared across
 * threads. */
typedef struct parley_ed25519_key parley_ed25519_key;

/* Prepares the point with Edwards y-coordinate `y` (32 bytes little-endian, bit 255 ignored).
 * Returns NULL when y is not canonical (>= p), is one of the small-order encodings, or is not
 * the y of a curve point, or when memory runs out. Cost: about five verifications. */
parley_ed25519_key *parley_ed25519_key_new(const uint8_t y[32]);
void parley_ed25519_key_free(parley_ed25519_key *key);

/* Verifies with A = A0 when `negative` is 0 and A = -A0 otherwise (the sign bit of A's
 * encoding). `r` is the signature's first half, `s` the second with the sign bit cleared,
 * `h` the reduced challenge scalar. Returns 1 when valid, 0 otherwise. */
int parley_ed25519_verify(const parley_ed25519_key *key, int negative, const uint8_t r[32], const uint8_t s[32],
                          const uint8_t h[32]);

/* 1 when `p` (32 bytes, the sign bit ignored) is one of the encodings of a point of small
 * order, as libsodium's ge25519_has_small_order decides it. */
int parley_ed25519_has_small_order(const uint8_t p[32]);

#endif
