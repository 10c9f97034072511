/* Freestanding helpers: memory/string functions, formatting, console. */
#include "lib.h"
#include "uart.h"
#include "x86.h"

void *memset(void *d, int c, size_t n)
{
    u8 *p = d;
    u64 w = (u8)c * 0x0101010101010101UL;
    while (n && ((uintptr_t)p & 7)) { *p++ = (u8)c; n--; }
    for (; n >= 8; n -= 8, p += 8) *(u64 *)p = w;
    while (n--) *p++ = (u8)c;
    return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
    u8 *dp = d;
    const u8 *sp = s;
    if ((((uintptr_t)dp | (uintptr_t)sp) & 7) == 0)
        for (; n >= 8; n -= 8, dp += 8, sp += 8) *(u64 *)dp = *(const u64 *)sp;
    while (n--) *dp++ = *sp++;
    return d;
}

void *memmove(void *d, const void *s, size_t n)
{
    u8 *dp = d;
    const u8 *sp = s;
    if (dp <= sp || dp >= sp + n)
        return memcpy(d, s, n);
    while (n--) dp[n] = sp[n];
    return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const u8 *x = a, *y = b;
    for (; n; n--, x++, y++)
        if (*x != *y) return *x - *y;
    return 0;
}

size_t strlen(const char *s)
{
    size_t n = 0;
    while (s[n]) n++;
    return n;
}

int strcmp(const char *a, const char *b)
{
    while (*a && *a == *b) { a++; b++; }
    return (u8)*a - (u8)*b;
}

int strncmp(const char *a, const char *b, size_t n)
{
    for (; n; n--, a++, b++) {
        if (*a != *b) return (u8)*a - (u8)*b;
        if (!*a) return 0;
    }
    return 0;
}

/* ------------------------------------------------------------ formatting */
struct outbuf { char *buf; size_t size, len; };

static void put(struct outbuf *o, char c)
{
    if (o->len + 1 < o->size) o->buf[o->len] = c;
    o->len++;
}

static void put_num(struct outbuf *o, u64 v, unsigned base, bool neg, int width, char pad, bool upper)
{
    char tmp[24];
    int n = 0;
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    do { tmp[n++] = digits[v % base]; v /= base; } while (v);
    if (neg) {
        if (pad == '0') { put(o, '-'); width--; }
        else tmp[n++] = '-';
    }
    for (int i = n; i < width; i++) put(o, pad);
    while (n) put(o, tmp[--n]);
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    struct outbuf o = { buf, size, 0 };
    for (; *fmt; fmt++) {
        if (*fmt != '%') { put(&o, *fmt); continue; }
        fmt++;
        char pad = ' ';
        int width = 0, lng = 0;
        bool left = false;
        if (*fmt == '-') { left = true; fmt++; }
        if (*fmt == '0') { pad = '0'; fmt++; }
        while (*fmt >= '0' && *fmt <= '9') width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l' || *fmt == 'z') { lng++; fmt++; }
        switch (*fmt) {
        case 'd': case 'i': {
            s64 v = lng ? va_arg(ap, s64) : va_arg(ap, int);
            put_num(&o, v < 0 ? -(u64)v : (u64)v, 10, v < 0, width, pad, false);
            break;
        }
        case 'u': {
            u64 v = lng ? va_arg(ap, u64) : va_arg(ap, unsigned);
            put_num(&o, v, 10, false, width, pad, false);
            break;
        }
        case 'x': case 'X': {
            u64 v = lng ? va_arg(ap, u64) : va_arg(ap, unsigned);
            put_num(&o, v, 16, false, width, pad, *fmt == 'X');
            break;
        }
        case 'p':
            put(&o, '0'); put(&o, 'x');
            put_num(&o, (u64)va_arg(ap, void *), 16, false, width, pad, false);
            break;
        case 'c':
            put(&o, (char)va_arg(ap, int));
            break;
        case 's': {
            const char *s = va_arg(ap, const char *);
            if (!s) s = "(null)";
            int n = (int)strlen(s);
            if (!left) for (int i = n; i < width; i++) put(&o, ' ');
            while (*s) put(&o, *s++);
            if (left) for (int i = n; i < width; i++) put(&o, ' ');
            break;
        }
        case '%':
            put(&o, '%');
            break;
        case 0:
            fmt--;
            break;
        default:
            put(&o, '%'); put(&o, *fmt);
            break;
        }
    }
    if (size) buf[o.len < size ? o.len : size - 1] = 0;
    return (int)o.len;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

static spinlock_t console_lock;

static int console_vprintf(bool lock, const char *fmt, va_list ap)
{
    char buf[512];
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    if (n > (int)sizeof(buf) - 1) n = sizeof(buf) - 1;
    if (lock) spin_lock(&console_lock);
    uart_write(buf, (size_t)n);
    if (lock) spin_unlock(&console_lock);
    return n;
}

int printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = console_vprintf(true, fmt, ap);
    va_end(ap);
    return n;
}

int console_printf_unlocked(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = console_vprintf(false, fmt, ap);
    va_end(ap);
    return n;
}

size_t parse_u64(const char *s, size_t len, u64 *out, bool allow_suffix)
{
    size_t i = 0;
    u64 v = 0;
    unsigned base = 10;
    if (len >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) { base = 16; i = 2; }
    size_t start = i;
    for (; i < len; i++) {
        char c = s[i];
        unsigned d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (base == 16 && c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (base == 16 && c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else break;
        v = v * base + d;
    }
    if (i == start) return 0;
    if (allow_suffix && i < len) {
        switch (s[i]) {
        case 'k': case 'K': v <<= 10; i++; break;
        case 'm': case 'M': v <<= 20; i++; break;
        case 'g': case 'G': v <<= 30; i++; break;
        }
    }
    *out = v;
    return i;
}

void guest_exit(u8 code)
{
    outb(0x501, code);
    /* Still here (no debug-exit device): halt this CPU in the kernel. */
    for (;;) kcall(1 /* KCALL_HALT */, 0, 0);
}
