/* Command line: space-separated key=value words. */
#include "cmdline.h"
#include "lib.h"

static const char *cmd = "";

void cmdline_init(const char *cmdline) { cmd = cmdline ? cmdline : ""; }

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

const char *cmdline_next(const char *key, size_t *pos, size_t *len)
{
    size_t klen = strlen(key);
    size_t i = *pos;
    while (cmd[i]) {
        while (cmd[i] && is_space(cmd[i])) i++;
        size_t start = i;
        while (cmd[i] && !is_space(cmd[i])) i++;
        size_t wlen = i - start;
        if (wlen >= klen && strncmp(cmd + start, key, klen) == 0 &&
            (wlen == klen || cmd[start + klen] == '=')) {
            *pos = i;
            if (wlen == klen) { *len = 0; return cmd + start + klen; }
            *len = wlen - klen - 1;
            return cmd + start + klen + 1;
        }
    }
    *pos = i;
    return NULL;
}

bool cmdline_get(const char *key, char *buf, size_t size)
{
    size_t pos = 0, len;
    const char *v = cmdline_next(key, &pos, &len);
    if (!v) return false;
    if (size) {
        if (len > size - 1) len = size - 1;
        memcpy(buf, v, len);
        buf[len] = 0;
    }
    return true;
}

bool cmdline_get_u64(const char *key, u64 *out)
{
    size_t pos = 0, len;
    const char *v = cmdline_next(key, &pos, &len);
    if (!v) return false;
    return parse_u64(v, len, out, true) == len && len > 0;
}

int cmdline_virtio_mmio_devices(struct virtio_mmio_desc *out, int max)
{
    size_t pos = 0, len;
    const char *v;
    int n = 0;
    while (n < max && (v = cmdline_next("virtio_mmio.device", &pos, &len))) {
        u64 size, base, irq;
        size_t i = parse_u64(v, len, &size, true);
        if (!i || i >= len || v[i] != '@') continue;
        i++;
        size_t j = parse_u64(v + i, len - i, &base, false);
        if (!j) continue;
        i += j;
        if (i >= len || v[i] != ':') continue;
        i++;
        j = parse_u64(v + i, len - i, &irq, false);
        if (!j) continue;
        out[n].size = size;
        out[n].base = base;
        out[n].irq = (u32)irq;
        n++;
    }
    return n;
}
