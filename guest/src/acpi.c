/* Minimal ACPI: RSDP -> XSDT/RSDT -> MADT, to count the CPUs. Ring 3. */
#include "acpi.h"
#include "lib.h"

struct rsdp {
    char sig[8];
    u8 checksum;
    char oem[6];
    u8 revision;
    u32 rsdt;
    u32 length;
    u64 xsdt;
    u8 xchecksum;
    u8 reserved[3];
} PACKED;

struct sdt_header {
    char sig[4];
    u32 length;
    u8 revision;
    u8 checksum;
    char oem[6];
    char oem_table[8];
    u32 oem_rev;
    u32 creator;
    u32 creator_rev;
} PACKED;

struct madt {
    struct sdt_header h;
    u32 lapic_addr;
    u32 flags;
    u8 entries[];
} PACKED;

static u8 sum(const void *p, size_t n)
{
    const u8 *b = p;
    u8 s = 0;
    while (n--) s += *b++;
    return s;
}

static bool rsdp_valid(const struct rsdp *r)
{
    if (memcmp(r->sig, "RSD PTR ", 8) != 0) return false;
    return sum(r, 20) == 0;
}

u64 acpi_find_rsdp(u64 hint)
{
    if (hint && rsdp_valid((const struct rsdp *)hint))
        return hint;
    for (u64 a = 0xe0000; a < 0x100000; a += 16)
        if (rsdp_valid((const struct rsdp *)a))
            return a;
    return 0;
}

const void *acpi_find_table(u64 rsdp_addr, const char sig[4])
{
    const struct rsdp *r = (const struct rsdp *)rsdp_addr;
    if (!r) return NULL;
    bool x = r->revision >= 2 && r->xsdt != 0;
    const struct sdt_header *root = (const struct sdt_header *)(x ? r->xsdt : (u64)r->rsdt);
    if (!root || root->length < sizeof(*root)) return NULL;
    size_t esz = x ? 8 : 4;
    size_t n = (root->length - sizeof(*root)) / esz;
    const u8 *ents = (const u8 *)(root + 1);
    for (size_t i = 0; i < n; i++) {
        u64 a = 0;
        memcpy(&a, ents + i * esz, esz);
        const struct sdt_header *t = (const struct sdt_header *)a;
        if (t && memcmp(t->sig, sig, 4) == 0)
            return t;
    }
    return NULL;
}

bool acpi_cpus(u64 rsdp, struct cpu_list *out)
{
    const struct madt *m = acpi_find_table(rsdp, "APIC");
    out->count = 0;
    out->lapic_base = 0xfee00000;
    if (!m) return false;
    if (m->lapic_addr) out->lapic_base = m->lapic_addr;
    const u8 *p = m->entries, *end = (const u8 *)m + m->h.length;
    while (p + 2 <= end && p[1] >= 2 && p + p[1] <= end) {
        u8 type = p[0], len = p[1];
        u32 id = 0, flags = 0;
        bool cpu = false;
        if (type == 0 && len >= 8) {            /* Processor Local APIC */
            id = p[3];
            memcpy(&flags, p + 4, 4);
            cpu = true;
        } else if (type == 9 && len >= 16) {    /* Processor Local x2APIC */
            memcpy(&id, p + 4, 4);
            memcpy(&flags, p + 8, 4);
            cpu = true;
        } else if (type == 5 && len >= 12) {    /* Local APIC address override */
            memcpy(&out->lapic_base, p + 4, 8);
        }
        if (cpu && (flags & 1)) {
            if (out->count < MAX_CPUS) out->apic_id[out->count] = id;
            out->count++;
        }
        p += len;
    }
    return true;
}
