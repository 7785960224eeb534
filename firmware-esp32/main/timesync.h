/* SNTP, only for file names: sign-in and TLS do not need the clock. */
#pragma once

#include <stdbool.h>

#include "uc_store.h"

void timesync_start(void);
/* Local date and time for a file name; false while the clock is not set. */
bool timesync_now(uc_datetime_t *dt);
