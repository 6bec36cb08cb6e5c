/*
 * hashword.c - reference vectors for epair.JenkinsHash32.
 *
 * An independent C implementation of hashword() from Bob Jenkins' lookup3
 * (the algorithm FreeBSD's jenkins_hash32() implements), written from the
 * algorithm's description so the Go port can be checked against C.
 *
 * Output: one line per vector, all numbers in hex without 0x:
 *
 *     <initval> <key0,key1,...|-> <hash>
 *
 * "-" stands for the empty key.
 *
 * Build and run:
 *     gcc -O2 -o /tmp/hashword hack/jenkins/hashword.c && /tmp/hashword
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define rot(x, k) (((x) << (k)) | ((x) >> (32 - (k))))

#define mix(a, b, c)                                                           \
	do {                                                                   \
		a -= c; a ^= rot(c, 4);  c += b;                               \
		b -= a; b ^= rot(a, 6);  a += c;                               \
		c -= b; c ^= rot(b, 8);  b += a;                               \
		a -= c; a ^= rot(c, 16); c += b;                               \
		b -= a; b ^= rot(a, 19); a += c;                               \
		c -= b; c ^= rot(b, 4);  b += a;                               \
	} while (0)

#define final(a, b, c)                                                         \
	do {                                                                   \
		c ^= b; c -= rot(b, 14);                                       \
		a ^= c; a -= rot(c, 11);                                       \
		b ^= a; b -= rot(a, 25);                                       \
		c ^= b; c -= rot(b, 16);                                       \
		a ^= c; a -= rot(c, 4);                                        \
		b ^= a; b -= rot(a, 14);                                       \
		c ^= b; c -= rot(b, 24);                                       \
	} while (0)

static uint32_t
hashword(const uint32_t *k, size_t length, uint32_t initval)
{
	uint32_t a, b, c;

	a = b = c = 0xdeadbeef + (((uint32_t)length) << 2) + initval;

	while (length > 3) {
		a += k[0];
		b += k[1];
		c += k[2];
		mix(a, b, c);
		length -= 3;
		k += 3;
	}

	switch (length) {
	case 3:
		c += k[2];
		/* FALLTHROUGH */
	case 2:
		b += k[1];
		/* FALLTHROUGH */
	case 1:
		a += k[0];
		final(a, b, c);
		/* FALLTHROUGH */
	case 0:
		break;
	}
	return c;
}

struct vector {
	size_t len;
	uint32_t key[8];
};

static const struct vector keys[] = {
	{ 0, { 0 } },
	{ 1, { 0 } },
	{ 1, { 1 } },
	{ 1, { 0xdeadbeef } },
	{ 2, { 1, 2 } },
	{ 3, { 1, 2, 3 } },
	{ 3, { 0, 0, 0 } },
	{ 3, { 1, 0x12345678, 0x9abcdef0 } },
	/* MAC key: index 1, host id 0x123456789abcdef0 (lo word, hi word). */
	{ 3, { 1, 0x9abcdef0, 0x12345678 } },
	{ 3, { 0xffffffff, 0xffffffff, 0xffffffff } },
	{ 4, { 1, 2, 3, 4 } },
	{ 6, { 1, 2, 3, 4, 5, 6 } },
	{ 7, { 1, 2, 3, 4, 5, 6, 7 } },
	{ 7, { 0xffffffff, 0, 0xffffffff, 0, 0xffffffff, 0, 0xffffffff } },
};

static const uint32_t initvals[] = { 0, 1, 0xdeadbeef };

int
main(void)
{
	size_t i, j, n;

	for (i = 0; i < sizeof(initvals) / sizeof(initvals[0]); i++) {
		for (j = 0; j < sizeof(keys) / sizeof(keys[0]); j++) {
			const struct vector *v = &keys[j];

			printf("%08" PRIx32 " ", initvals[i]);
			if (v->len == 0)
				printf("-");
			for (n = 0; n < v->len; n++)
				printf("%s%08" PRIx32, n ? "," : "", v->key[n]);
			printf(" %08" PRIx32 "\n",
			    hashword(v->key, v->len, initvals[i]));
		}
	}
	return 0;
}
