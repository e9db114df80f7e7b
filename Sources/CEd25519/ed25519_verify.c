/*
 * Ed25519 verification with precomputed tables (see parley_ed25519.h).
 *
 * Field elements mod p = 2^255 - 19 in five 51-bit limbs (unsigned __int128 products); points
 * on -x^2 + y^2 = 1 + d x^2 y^2 in extended coordinates (X:Y:Z:T), x = X/Z, y = Y/Z, xy = T/Z,
 * with the Hisil-Wong-Carter-Dawson formulas for a = -1. Table entries are affine, stored as
 * (y + x, y - x, 2d x y).
 *
 * s*B uses a global table of signed radix-256 digits (32 rows of 128 multiples of 256^i B,
 * built once, about 480 KB): 32 additions and no doublings. h*A uses the key's table of
 * signed radix-32 digits, interleaved four ways (13 rows of 16 multiples of 2^(20 j) A0): at
 * most 51 additions and 15 doublings. Everything handles public values only, so nothing here
 * needs to run in constant time.
 */
#include "parley_ed25519.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef unsigned __int128 u128;
typedef struct { uint64_t v[5]; } fe;

#define MASK51 ((uint64_t)0x7ffffffffffffULL)

/* ------------------------------------------------------------------ field arithmetic */

static uint64_t load64(const uint8_t *s) {
    uint64_t r = 0;
    for (int i = 7; i >= 0; i--) r = (r << 8) | s[i];
    return r;
}

static void fe_frombytes(fe *h, const uint8_t s[32]) {
    uint64_t x0 = load64(s), x1 = load64(s + 8), x2 = load64(s + 16), x3 = load64(s + 24);
    h->v[0] = x0 & MASK51;
    h->v[1] = ((x0 >> 51) | (x1 << 13)) & MASK51;
    h->v[2] = ((x1 >> 38) | (x2 << 26)) & MASK51;
    h->v[3] = ((x2 >> 25) | (x3 << 39)) & MASK51;
    h->v[4] = (x3 >> 12) & MASK51;
}

static void fe_carry(fe *h) {
    uint64_t c;
    c = h->v[0] >> 51; h->v[0] &= MASK51; h->v[1] += c;
    c = h->v[1] >> 51; h->v[1] &= MASK51; h->v[2] += c;
    c = h->v[2] >> 51; h->v[2] &= MASK51; h->v[3] += c;
    c = h->v[3] >> 51; h->v[3] &= MASK51; h->v[4] += c;
    c = h->v[4] >> 51; h->v[4] &= MASK51; h->v[0] += 19 * c;
    c = h->v[0] >> 51; h->v[0] &= MASK51; h->v[1] += c;
}

/* The unique representative below p, little-endian. */
static void fe_tobytes(uint8_t s[32], const fe *f) {
    fe t = *f;
    fe_carry(&t);
    fe_carry(&t);
    /* Now t < 2^255 + 2^13; t >= p exactly when t + 19 >= 2^255. */
    uint64_t q = (t.v[0] + 19) >> 51;
    q = (t.v[1] + q) >> 51;
    q = (t.v[2] + q) >> 51;
    q = (t.v[3] + q) >> 51;
    q = (t.v[4] + q) >> 51;
    t.v[0] += 19 * q;
    uint64_t c;
    c = t.v[0] >> 51; t.v[0] &= MASK51; t.v[1] += c;
    c = t.v[1] >> 51; t.v[1] &= MASK51; t.v[2] += c;
    c = t.v[2] >> 51; t.v[2] &= MASK51; t.v[3] += c;
    c = t.v[3] >> 51; t.v[3] &= MASK51; t.v[4] += c;
    t.v[4] &= MASK51;
    uint64_t w0 = t.v[0] | (t.v[1] << 51);
    uint64_t w1 = (t.v[1] >> 13) | (t.v[2] << 38);
    uint64_t w2 = (t.v[2] >> 26) | (t.v[3] << 25);
    uint64_t w3 = (t.v[3] >> 39) | (t.v[4] << 12);
    uint64_t w[4] = {w0, w1, w2, w3};
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 8; j++) s[8 * i + j] = (uint8_t)(w[i] >> (8 * j));
}

static void fe_0(fe *h) { memset(h, 0, sizeof *h); }
static void fe_1(fe *h) { fe_0(h); h->v[0] = 1; }

static void fe_add(fe *h, const fe *f, const fe *g) {
    for (int i = 0; i < 5; i++) h->v[i] = f->v[i] + g->v[i];
    fe_carry(h);
}

/* f - g + 4p, carried: correct for limbs of g below 2^53. */
static void fe_sub(fe *h, const fe *f, const fe *g) {
    h->v[0] = f->v[0] + 0x1fffffffffffb4ULL - g->v[0];
    h->v[1] = f->v[1] + 0x1ffffffffffffcULL - g->v[1];
    h->v[2] = f->v[2] + 0x1ffffffffffffcULL - g->v[2];
    h->v[3] = f->v[3] + 0x1ffffffffffffcULL - g->v[3];
    h->v[4] = f->v[4] + 0x1ffffffffffffcULL - g->v[4];
    fe_carry(h);
}

static void fe_neg(fe *h, const fe *f) {
    fe z;
    fe_0(&z);
    fe_sub(h, &z, f);
}

static void fe_mul(fe *h, const fe *f, const fe *g) {
    uint64_t f0 = f->v[0], f1 = f->v[1], f2 = f->v[2], f3 = f->v[3], f4 = f->v[4];
    uint64_t g0 = g->v[0], g1 = g->v[1], g2 = g->v[2], g3 = g->v[3], g4 = g->v[4];
    uint64_t g1_19 = 19 * g1, g2_19 = 19 * g2, g3_19 = 19 * g3, g4_19 = 19 * g4;
    u128 r0 = (u128)f0 * g0 + (u128)f1 * g4_19 + (u128)f2 * g3_19 + (u128)f3 * g2_19 + (u128)f4 * g1_19;
    u128 r1 = (u128)f0 * g1 + (u128)f1 * g0 + (u128)f2 * g4_19 + (u128)f3 * g3_19 + (u128)f4 * g2_19;
    u128 r2 = (u128)f0 * g2 + (u128)f1 * g1 + (u128)f2 * g0 + (u128)f3 * g4_19 + (u128)f4 * g3_19;
    u128 r3 = (u128)f0 * g3 + (u128)f1 * g2 + (u128)f2 * g1 + (u128)f3 * g0 + (u128)f4 * g4_19;
    u128 r4 = (u128)f0 * g4 + (u128)f1 * g3 + (u128)f2 * g2 + (u128)f3 * g1 + (u128)f4 * g0;
    uint64_t c;
    r1 += (uint64_t)(r0 >> 51); uint64_t h0 = (uint64_t)r0 & MASK51;
    r2 += (uint64_t)(r1 >> 51); uint64_t h1 = (uint64_t)r1 & MASK51;
    r3 += (uint64_t)(r2 >> 51); uint64_t h2 = (uint64_t)r2 & MASK51;
    r4 += (uint64_t)(r3 >> 51); uint64_t h3 = (uint64_t)r3 & MASK51;
    c = (uint64_t)(r4 >> 51); uint64_t h4 = (uint64_t)r4 & MASK51;
    h0 += 19 * c;
    c = h0 >> 51; h0 &= MASK51; h1 += c;
    h->v[0] = h0; h->v[1] = h1; h->v[2] = h2; h->v[3] = h3; h->v[4] = h4;
}

static void fe_sq(fe *h, const fe *f) {
    uint64_t f0 = f->v[0], f1 = f->v[1], f2 = f->v[2], f3 = f->v[3], f4 = f->v[4];
    uint64_t f0_2 = 2 * f0, f1_2 = 2 * f1, f3_19 = 19 * f3, f4_19 = 19 * f4;
    u128 r0 = (u128)f0 * f0 + (u128)f1_2 * f4_19 + (u128)(2 * f2) * f3_19;
    u128 r1 = (u128)f0_2 * f1 + (u128)(2 * f2) * f4_19 + (u128)f3 * f3_19;
    u128 r2 = (u128)f0_2 * f2 + (u128)f1 * f1 + (u128)(2 * f3) * f4_19;
    u128 r3 = (u128)f0_2 * f3 + (u128)f1_2 * f2 + (u128)f4 * f4_19;
    u128 r4 = (u128)f0_2 * f4 + (u128)f1_2 * f3 + (u128)f2 * f2;
    uint64_t c;
    r1 += (uint64_t)(r0 >> 51); uint64_t h0 = (uint64_t)r0 & MASK51;
    r2 += (uint64_t)(r1 >> 51); uint64_t h1 = (uint64_t)r1 & MASK51;
    r3 += (uint64_t)(r2 >> 51); uint64_t h2 = (uint64_t)r2 & MASK51;
    r4 += (uint64_t)(r3 >> 51); uint64_t h3 = (uint64_t)r3 & MASK51;
    c = (uint64_t)(r4 >> 51); uint64_t h4 = (uint64_t)r4 & MASK51;
    h0 += 19 * c;
    c = h0 >> 51; h0 &= MASK51; h1 += c;
    h->v[0] = h0; h->v[1] = h1; h->v[2] = h2; h->v[3] = h3; h->v[4] = h4;
}

static void fe_sqn(fe *h, const fe *f, int n) {
    fe_sq(h, f);
    for (int i = 1; i < n; i++) fe_sq(h, h);
}

/* z^(2^250 - 1) and z^11, the common prefix of inversion and pow22523. */
static void fe_pow_prefix(fe *z250, fe *z11, const fe *z) {
    fe z2, z9, t, z5, z10, z20, z50, z100;
    fe_sq(&z2, z);                  /* 2 */
    fe_sqn(&t, &z2, 2);             /* 8 */
    fe_mul(&z9, &t, z);             /* 9 */
    fe_mul(z11, &z9, &z2);          /* 11 */
    fe_sq(&t, z11);                 /* 22 */
    fe_mul(&z5, &t, &z9);           /* 2^5 - 1 */
    fe_sqn(&t, &z5, 5);
    fe_mul(&z10, &t, &z5);          /* 2^10 - 1 */
    fe_sqn(&t, &z10, 10);
    fe_mul(&z20, &t, &z10);         /* 2^20 - 1 */
    fe_sqn(&t, &z20, 20);
    fe_mul(&t, &t, &z20);           /* 2^40 - 1 */
    fe_sqn(&t, &t, 10);
    fe_mul(&z50, &t, &z10);         /* 2^50 - 1 */
    fe_sqn(&t, &z50, 50);
    fe_mul(&z100, &t, &z50);        /* 2^100 - 1 */
    fe_sqn(&t, &z100, 100);
    fe_mul(&t, &t, &z100);          /* 2^200 - 1 */
    fe_sqn(&t, &t, 50);
    fe_mul(z250, &t, &z50);         /* 2^250 - 1 */
}

/* z^(p - 2) = z^(2^255 - 21). */
static void fe_invert(fe *out, const fe *z) {
    fe z250, z11, t;
    fe_pow_prefix(&z250, &z11, z);
    fe_sqn(&t, &z250, 5);           /* 2^255 - 2^5 */
    fe_mul(out, &t, &z11);          /* 2^255 - 21 */
}

/* z^((p - 5) / 8) = z^(2^252 - 3). */
static void fe_pow22523(fe *out, const fe *z) {
    fe z250, z11, t;
    fe_pow_prefix(&z250, &z11, z);
    fe_sqn(&t, &z250, 2);           /* 2^252 - 4 */
    fe_mul(out, &t, z);             /* 2^252 - 3 */
}

static int fe_iszero(const fe *f) {
    uint8_t s[32];
    fe_tobytes(s, f);
    uint8_t d = 0;
    for (int i = 0; i < 32; i++) d |= s[i];
    return d == 0;
}

static int fe_isnegative(const fe *f) {
    uint8_t s[32];
    fe_tobytes(s, f);
    return s[0] & 1;
}

static int fe_equal(const fe *f, const fe *g) {
    uint8_t a[32], b[32];
    fe_tobytes(a, f);
    fe_tobytes(b, g);
    return memcmp(a, b, 32) == 0;
}

static void fe_small(fe *h, uint64_t n) { fe_0(h); h->v[0] = n; }

/* ------------------------------------------------------------------ constants */

static fe FE_D, FE_D2, FE_SQRTM1;

/* z^e for a 256-bit little-endian exponent (square and multiply; constants only). */
static void fe_pow_bytes(fe *out, const fe *z, const uint8_t e[32]) {
    fe r;
    fe_1(&r);
    for (int i = 255; i >= 0; i--) {
        fe_sq(&r, &r);
        if ((e[i / 8] >> (i % 8)) & 1) fe_mul(&r, &r, z);
    }
    *out = r;
}

static void init_constants(void) {
    fe a, b, t;
    /* d = -121665 / 121666 */
    fe_small(&a, 121665);
    fe_neg(&a, &a);
    fe_small(&b, 121666);
    fe_invert(&t, &b);
    fe_mul(&FE_D, &a, &t);
    fe_add(&FE_D2, &FE_D, &FE_D);
    /* sqrt(-1) = 2^((p - 1) / 4), (p - 1) / 4 = 2^253 - 5 */
    uint8_t e[32];
    memset(e, 0xff, sizeof e);
    e[0] = 0xfb;
    e[31] = 0x1f;
    fe_small(&a, 2);
    fe_pow_bytes(&FE_SQRTM1, &a, e);
}

/* ------------------------------------------------------------------ points */

typedef struct { fe X, Y, Z, T; } ge_p3;
typedef struct { fe X, Y, Z; } ge_p2;
typedef struct { fe X, Y, Z, T; } ge_p1p1;   /* x = X/Z, y = Y/T */
typedef struct { fe yplusx, yminusx, xy2d; } ge_precomp;

static void p3_0(ge_p3 *h) { fe_0(&h->X); fe_1(&h->Y); fe_1(&h->Z); fe_0(&h->T); }

static void p1p1_to_p2(ge_p2 *r, const ge_p1p1 *p) {
    fe_mul(&r->X, &p->X, &p->T);
    fe_mul(&r->Y, &p->Y, &p->Z);
    fe_mul(&r->Z, &p->Z, &p->T);
}

static void p1p1_to_p3(ge_p3 *r, const ge_p1p1 *p) {
    fe_mul(&r->X, &p->X, &p->T);
    fe_mul(&r->Y, &p->Y, &p->Z);
    fe_mul(&r->Z, &p->Z, &p->T);
    fe_mul(&r->T, &p->X, &p->Y);
}

static void p2_dbl(ge_p1p1 *r, const ge_p2 *p) {
    fe t0;
    fe_sq(&r->X, &p->X);
    fe_sq(&r->Z, &p->Y);
    fe_sq(&r->T, &p->Z);
    fe_add(&r->T, &r->T, &r->T);
    fe_add(&r->Y, &p->X, &p->Y);
    fe_sq(&t0, &r->Y);
    fe_add(&r->Y, &r->Z, &r->X);
    fe_sub(&r->Z, &r->Z, &r->X);
    fe_sub(&r->X, &t0, &r->Y);
    fe_sub(&r->T, &r->T, &r->Z);
}

static void p3_dbl(ge_p3 *r, const ge_p3 *p) {
    ge_p2 q = {p->X, p->Y, p->Z};
    ge_p1p1 t;
    p2_dbl(&t, &q);
    p1p1_to_p3(r, &t);
}

/* r = p + q (q affine) or p - q. */
static void madd(ge_p1p1 *r, const ge_p3 *p, const ge_precomp *q, int subtract) {
    fe a, b, c, d, ypx, ymx;
    fe_add(&ypx, &p->Y, &p->X);
    fe_sub(&ymx, &p->Y, &p->X);
    fe_mul(&a, &ypx, subtract ? &q->yminusx : &q->yplusx);
    fe_mul(&b, &ymx, subtract ? &q->yplusx : &q->yminusx);
    fe_mul(&c, &q->xy2d, &p->T);
    fe_add(&d, &p->Z, &p->Z);
    fe_sub(&r->X, &a, &b);
    fe_add(&r->Y, &a, &b);
    if (subtract) {
        fe_sub(&r->Z, &d, &c);
        fe_add(&r->T, &d, &c);
    } else {
        fe_add(&r->Z, &d, &c);
        fe_sub(&r->T, &d, &c);
    }
}

/* r = p + q, both extended (table building only). */
static void p3_add(ge_p3 *r, const ge_p3 *p, const ge_p3 *q) {
    fe a, b, c, d, t;
    fe_sub(&a, &p->Y, &p->X);
    fe_sub(&t, &q->Y, &q->X);
    fe_mul(&a, &a, &t);
    fe_add(&b, &p->Y, &p->X);
    fe_add(&t, &q->Y, &q->X);
    fe_mul(&b, &b, &t);
    fe_mul(&c, &p->T, &q->T);
    fe_mul(&c, &c, &FE_D2);
    fe_mul(&d, &p->Z, &q->Z);
    fe_add(&d, &d, &d);
    ge_p1p1 s;
    fe_sub(&s.X, &b, &a);
    fe_add(&s.Y, &b, &a);
    fe_add(&s.Z, &d, &c);
    fe_sub(&s.T, &d, &c);
    p1p1_to_p3(r, &s);
}

static void p3_tobytes(uint8_t s[32], const ge_p3 *p) {
    fe recip, x, y;
    fe_invert(&recip, &p->Z);
    fe_mul(&x, &p->X, &recip);
    fe_mul(&y, &p->Y, &recip);
    fe_tobytes(s, &y);
    s[31] ^= (uint8_t)(fe_isnegative(&x) << 7);
}

/* The point with y-coordinate `s` (bit 255 ignored) and an even x. 0 on success. */
static int p3_from_y(ge_p3 *h, const uint8_t s[32]) {
    fe u, v, v3, vxx, check;
    fe_frombytes(&h->Y, s);
    fe_1(&h->Z);
    fe_sq(&u, &h->Y);
    fe_mul(&v, &u, &FE_D);
    fe_sub(&u, &u, &h->Z);          /* u = y^2 - 1 */
    fe_add(&v, &v, &h->Z);          /* v = d y^2 + 1 */
    fe_sq(&v3, &v);
    fe_mul(&v3, &v3, &v);           /* v^3 */
    fe_sq(&h->X, &v3);
    fe_mul(&h->X, &h->X, &v);
    fe_mul(&h->X, &h->X, &u);       /* u v^7 */
    fe_pow22523(&h->X, &h->X);      /* (u v^7)^((p - 5) / 8) */
    fe_mul(&h->X, &h->X, &v3);
    fe_mul(&h->X, &h->X, &u);       /* x = u v^3 (u v^7)^((p - 5) / 8) */
    fe_sq(&vxx, &h->X);
    fe_mul(&vxx, &vxx, &v);
    fe_sub(&check, &vxx, &u);
    if (!fe_iszero(&check)) {
        fe_add(&check, &vxx, &u);
        if (!fe_iszero(&check)) return -1;
        fe_mul(&h->X, &h->X, &FE_SQRTM1);
    }
    if (fe_isnegative(&h->X)) fe_neg(&h->X, &h->X);
    fe_mul(&h->T, &h->X, &h->Y);
    return 0;
}

/* Affine (y + x, y - x, 2d x y) forms of `n` points, with one inversion. */
static int to_precomp(ge_precomp *out, const ge_p3 *points, size_t n) {
    fe *prefix = malloc(n * sizeof(fe));
    if (prefix == NULL) return -1;
    fe acc;
    fe_1(&acc);
    for (size_t i = 0; i < n; i++) {
        prefix[i] = acc;
        fe_mul(&acc, &acc, &points[i].Z);
    }
    fe inv;
    fe_invert(&inv, &acc);
    for (size_t i = n; i-- > 0;) {
        fe zinv, x, y;
        fe_mul(&zinv, &inv, &prefix[i]);
        fe_mul(&inv, &inv, &points[i].Z);
        fe_mul(&x, &points[i].X, &zinv);
        fe_mul(&y, &points[i].Y, &zinv);
        fe_add(&out[i].yplusx, &y, &x);
        fe_sub(&out[i].yminusx, &y, &x);
        fe_mul(&out[i].xy2d, &x, &y);
        fe_mul(&out[i].xy2d, &out[i].xy2d, &FE_D2);
    }
    free(prefix);
    return 0;
}

/* rows x per multiples: row i holds k * step^i * P for k = 1..per. */
static int build_table(ge_precomp *table, const ge_p3 *p, int rows, int per, int doublings_per_row) {
    ge_p3 *points = malloc((size_t)rows * (size_t)per * sizeof(ge_p3));
    if (points == NULL) return -1;
    ge_p3 base = *p;
    for (int i = 0; i < rows; i++) {
        ge_p3 *row = points + (size_t)i * (size_t)per;
        row[0] = base;
        for (int k = 1; k < per; k++) p3_add(&row[k], &row[k - 1], &base);
        for (int d = 0; d < doublings_per_row; d++) p3_dbl(&base, &base);
    }
    int rc = to_precomp(table, points, (size_t)rows * (size_t)per);
    free(points);
    return rc;
}

/* ------------------------------------------------------------------ scalars */

/* Signed digits in radix 2^w: a = sum e[i] 2^(w i), |e[i]| <= 2^(w-1), for a < 2^253. */
static void recode(int8_t *e, int n, const uint8_t a[32], int w) {
    int carry = 0;
    int half = 1 << (w - 1), full = 1 << w;
    for (int i = 0; i < n; i++) {
        int bit = w * i, v = 0;
        for (int j = 0; j < w; j++) {
            int b = bit + j;
            if (b < 256) v |= ((a[b >> 3] >> (b & 7)) & 1) << j;
        }
        v += carry;
        if (v >= half) {
            e[i] = (int8_t)(v - full);
            carry = 1;
        } else {
            e[i] = (int8_t)v;
            carry = 0;
        }
    }
}

/* s < L = 2^252 + 27742317777372353535851937790883648493. */
static int scalar_is_canonical(const uint8_t s[32]) {
    static const uint8_t L[32] = {
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10};
    for (int i = 31; i >= 0; i--) {
        if (s[i] < L[i]) return 1;
        if (s[i] > L[i]) return 0;
    }
    return 0;
}

int parley_ed25519_has_small_order(const uint8_t p[32]) {
    static const uint8_t blacklist[7][32] = {
        /* 0 (order 4) */
        {0},
        /* 1 (order 1) */
        {0x01},
        /* order 8 */
        {0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0,
         0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05},
        /* order 8 */
        {0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f,
         0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a},
        /* p - 1 (order 2) */
        {0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
         0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
        /* p (= 0, order 4) */
        {0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
         0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
        /* p + 1 (= 1, order 1) */
        {0xee, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
         0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
    };
    for (int k = 0; k < 7; k++) {
        if (memcmp(p, blacklist[k], 31) == 0 && (p[31] & 0x7f) == blacklist[k][31]) return 1;
    }
    return 0;
}

/* y < p, ignoring the sign bit. */
static int y_is_canonical(const uint8_t y[32]) {
    if ((y[31] & 0x7f) != 0x7f) return 1;
    for (int i = 30; i > 0; i--)
        if (y[i] != 0xff) return 1;
    return y[0] < 0xed;
}

/* ------------------------------------------------------------------ tables */

enum {
    B_W = 8, B_DIGITS = 32, B_PER = 128,             /* radix 256: 32 rows x 128 */
    A_W = 5, A_DIGITS = 51, A_PER = 16, A_WAYS = 4,  /* radix 32, four-way interleaved */
    A_ROWS = (A_DIGITS + A_WAYS - 1) / A_WAYS        /* 13 rows, each 2^(5*4) = 2^20 apart */
};

struct parley_ed25519_key {
    ge_precomp table[A_ROWS * A_PER];
};

static ge_precomp *b_table;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init_tables(void) {
    init_constants();
    /* B: y = 4/5, x even. */
    fe four, five, y;
    fe_small(&four, 4);
    fe_small(&five, 5);
    fe_invert(&y, &five);
    fe_mul(&y, &y, &four);
    uint8_t yb[32];
    fe_tobytes(yb, &y);
    ge_p3 b;
    if (p3_from_y(&b, yb) != 0) return;
    ge_precomp *table = malloc((size_t)B_DIGITS * B_PER * sizeof(ge_precomp));
    if (table == NULL) return;
    if (build_table(table, &b, B_DIGITS, B_PER, B_W) != 0) {
        free(table);
        return;
    }
    b_table = table;
}

parley_ed25519_key *parley_ed25519_key_new(const uint8_t y[32]) {
    pthread_once(&init_once, init_tables);
    if (b_table == NULL) return NULL;
    if (!y_is_canonical(y) || parley_ed25519_has_small_order(y)) return NULL;
    ge_p3 a;
    if (p3_from_y(&a, y) != 0) return NULL;
    parley_ed25519_key *key = malloc(sizeof *key);
    if (key == NULL) return NULL;
    if (build_table(key->table, &a, A_ROWS, A_PER, A_W * A_WAYS) != 0) {
        free(key);
        return NULL;
    }
    return key;
}

void parley_ed25519_key_free(parley_ed25519_key *key) { free(key); }

static void add_digit(ge_p3 *acc, const ge_precomp *row, int digit, int negate) {
    if (digit == 0) return;
    int subtract = digit < 0;
    if (negate) subtract = !subtract;
    ge_p1p1 t;
    madd(&t, acc, &row[(digit < 0 ? -digit : digit) - 1], subtract);
    p1p1_to_p3(acc, &t);
}

int parley_ed25519_verify(const parley_ed25519_key *key, int negative, const uint8_t r[32], const uint8_t s[32],
                          const uint8_t h[32]) {
    if (key == NULL || b_table == NULL) return 0;
    if (!scalar_is_canonical(s) || parley_ed25519_has_small_order(r)) return 0;
    int8_t es[B_DIGITS], eh[A_DIGITS];
    recode(es, B_DIGITS, s, B_W);
    recode(eh, A_DIGITS, h, A_W);

    /* -h*A: with A = A0 subtract h*A0; with A = -A0 add it. */
    ge_p3 acc;
    p3_0(&acc);
    for (int way = A_WAYS - 1; way >= 0; way--) {
        if (way != A_WAYS - 1) {
            ge_p2 p2 = {acc.X, acc.Y, acc.Z};
            ge_p1p1 t;
            for (int d = 0; d < A_W - 1; d++) {
                p2_dbl(&t, &p2);
                p1p1_to_p2(&p2, &t);
            }
            p2_dbl(&t, &p2);
            p1p1_to_p3(&acc, &t);
        }
        for (int j = 0; j < A_ROWS; j++) {
            int i = A_WAYS * j + way;
            if (i < A_DIGITS) add_digit(&acc, &key->table[j * A_PER], eh[i], !negative);
        }
    }
    /* + s*B */
    for (int i = 0; i < B_DIGITS; i++) add_digit(&acc, &b_table[i * B_PER], es[i], 0);

    uint8_t check[32];
    p3_tobytes(check, &acc);
    return memcmp(check, r, 32) == 0;
}
