#pragma once
#include <stdio.h>
typedef struct { int dummy; } sdmmc_card_t;
void sdmmc_card_print_info(FILE *stream, const sdmmc_card_t *card);
