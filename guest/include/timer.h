#ifndef BULKHEAD_TIMER_H
#define BULKHEAD_TIMER_H
#include "types.h"

/* TSC frequency in kHz: from tsc_khz= on the command line, else calibrated
 * once against PIT channel 2. */
u64 tsc_khz(void);
const char *tsc_source(void);   /* "cmdline" or "pit" */
u64 tsc_to_us(u64 cycles);
u64 us_to_tsc(u64 us);
void udelay(u64 us);
#endif
