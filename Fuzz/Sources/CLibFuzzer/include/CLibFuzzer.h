#ifndef BULKHEAD_CLIBFUZZER_H
#define BULKHEAD_CLIBFUZZER_H
#include <stddef.h>
#include <stdint.h>

// libFuzzer's driver (compiler-rt, linked by -sanitize=fuzzer). The fuzz targets call it from
// their own main: SwiftPM renames an executable's entry point, so libFuzzer's main is not used.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
