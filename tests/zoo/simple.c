/* simple: stack, global (data + bss) and heap memory survive checkpoint/restore. */
#include "zoo.h"
#include <signal.h>

#define HEAP_SIZE (4u << 20) /* 4 MiB */

static char global_data[] = "global initialized data survives";
static uint64_t global_bss[4096];           /* 32 KiB of .bss */
static volatile int global_counter = 12345; /* modified before READY */

int main(void)
{
    char stack_buf[8192];
    char line[64];

    zoo_fill(stack_buf, sizeof stack_buf, 1);
    for (size_t i = 0; i < sizeof global_bss / sizeof global_bss[0]; i++)
        global_bss[i] = i * 0x0101010101010101ULL;
    global_counter += 1;

    unsigned char *heap = malloc(HEAP_SIZE);
    CHECK(heap != NULL, "malloc");
    zoo_fill(heap, HEAP_SIZE, 2);
    /* a few small allocations too */
    char *small[16];
    for (int i = 0; i < 16; i++) {
        small[i] = malloc(32 + i);
        CHECK(small[i] != NULL, "malloc small");
        snprintf(small[i], 32 + i, "small block %d", i);
    }
    uint64_t sum_before = zoo_fnv(heap, HEAP_SIZE, 0);

    zoo_ready();
    zoo_read_line(line, sizeof line);

    if (strcmp(line, "die") == 0) {
        /* lets the harness check exit-status propagation (128+SIGTERM) */
        signal(SIGTERM, SIG_DFL);
        raise(SIGTERM);
    }

    CHECK(strcmp(global_data, "global initialized data survives") == 0, "global data");
    printf("global data ok\n");
    for (size_t i = 0; i < sizeof global_bss / sizeof global_bss[0]; i++)
        CHECK(global_bss[i] == i * 0x0101010101010101ULL, "bss word %zu", i);
    CHECK(global_counter == 12346, "global counter %d", global_counter);
    printf("bss ok\n");
    CHECK(zoo_check_fill(stack_buf, sizeof stack_buf, 1), "stack buffer");
    printf("stack ok\n");
    for (int i = 0; i < 16; i++) {
        char want[64];
        snprintf(want, sizeof want, "small block %d", i);
        CHECK(strcmp(small[i], want) == 0, "small block %d", i);
    }
    printf("small heap ok\n");
    CHECK(zoo_check_fill(heap, HEAP_SIZE, 2), "heap pattern");
    uint64_t sum_after = zoo_fnv(heap, HEAP_SIZE, 0);
    CHECK(sum_before == sum_after, "heap checksum");
    printf("heap checksum %016llx\n", (unsigned long long)sum_after);
    /* heap still usable */
    for (int i = 0; i < 16; i++)
        free(small[i]);
    void *more = malloc(1 << 20);
    CHECK(more != NULL, "malloc after restore");
    memset(more, 0x5a, 1 << 20);
    free(more);
    free(heap);
    printf("malloc after restore ok\n");
    zoo_done();
}
