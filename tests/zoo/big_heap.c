/* big_heap: N MiB (argv[1], default 64) of non-zero pseudo-random heap data;
 * the checksum is verified and printed after "go".  Also used by the
 * benchmark. */
#include "zoo.h"

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9E3779B97F4A7C15ULL + (h << 6) + (h >> 2);
    return h;
}

int main(int argc, char **argv)
{
    char line[64];
    long mib = argc > 1 ? strtol(argv[1], NULL, 10) : 64;
    CHECK(mib > 0 && mib <= (1L << 20), "bad size %ld", mib);
    size_t words = (size_t)mib << 17; /* 8-byte words */
    uint64_t *heap = malloc(words * 8);
    CHECK(heap != NULL, "malloc %ld MiB", mib);

    uint64_t s = 0x123456789abcdefULL, h = 0;
    for (size_t i = 0; i < words; i++) {
        uint64_t v = zoo_rand(&s) | 0x0101010101010101ULL; /* no zero bytes */
        heap[i] = v;
        h = mix(h, v);
    }

    zoo_ready();
    zoo_read_line(line, sizeof line);

    uint64_t h2 = 0;
    for (size_t i = 0; i < words; i++)
        h2 = mix(h2, heap[i]);
    CHECK(h2 == h, "heap checksum mismatch");
    printf("size %ld MiB\n", mib);
    printf("checksum %016llx\n", (unsigned long long)h2);
    free(heap);
    zoo_done();
}
