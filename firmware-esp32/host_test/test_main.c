/* Host tests of the firmware's portable core. Usage: test_core VECTORS_DIR */
#include <stdlib.h>

#include "th.h"

void suite_codec(void);
void suite_wire(void);
void suite_sign(void);
void suite_reply(void);
void suite_store(void);
void suite_upload(void);

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s TESTS_VECTORS_DIR\n", argv[0]);
        return 2;
    }
    th_vectors = argv[1];
    printf("uplink_core host tests (%zu-bit, vectors: %s)\n", sizeof(void *) * 8, th_vectors);
    suite_codec();
    suite_wire();
    suite_sign();
    suite_reply();
    suite_store();
    suite_upload();
    return th_summary();
}
