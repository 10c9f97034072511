/* PCI configuration mechanism #1, bus 0 scan, I/O BAR sizing and assignment.
 * See pci.h and guest/README.md ("PCI"). */
#include "pci.h"
#include "lib.h"
#include "x86.h"

#define PCI_CONFIG_ADDRESS 0xcf8
#define PCI_CONFIG_DATA    0xcfc

static u32 cfg_address(u8 bus, u8 dev, u8 fn, u8 reg)
{
    return 0x80000000u | ((u32)bus << 16) | ((u32)(dev & 31) << 11) | ((u32)(fn & 7) << 8) | (reg & 0xfc);
}

u32 pci_cfg_read32(u8 bus, u8 dev, u8 fn, u8 reg)
{
    outl(PCI_CONFIG_ADDRESS, cfg_address(bus, dev, fn, reg));
    return inl(PCI_CONFIG_DATA);
}

void pci_cfg_write32(u8 bus, u8 dev, u8 fn, u8 reg, u32 v)
{
    outl(PCI_CONFIG_ADDRESS, cfg_address(bus, dev, fn, reg));
    outl(PCI_CONFIG_DATA, v);
}

u16 pci_cfg_read16(u8 bus, u8 dev, u8 fn, u8 reg)
{
    outl(PCI_CONFIG_ADDRESS, cfg_address(bus, dev, fn, reg));
    return inw((u16)(PCI_CONFIG_DATA + (reg & 2)));
}

void pci_cfg_write16(u8 bus, u8 dev, u8 fn, u8 reg, u16 v)
{
    outl(PCI_CONFIG_ADDRESS, cfg_address(bus, dev, fn, reg));
    outw((u16)(PCI_CONFIG_DATA + (reg & 2)), v);
}

bool pci_present(void)
{
    static int present = -1;
    if (present < 0) {
        outl(PCI_CONFIG_ADDRESS, 0x80000000u);
        present = inl(PCI_CONFIG_ADDRESS) == 0x80000000u;
    }
    return present;
}

bool pci_find(u16 vendor, u16 device, int which, struct pci_dev *out)
{
    if (!pci_present()) return false;
    u32 want = ((u32)device << 16) | vendor;
    for (u8 dev = 0; dev < 32; dev++) {
        u32 id = pci_cfg_read32(0, dev, 0, PCI_VENDOR_ID);
        if ((id & 0xffff) == 0xffff || id != want) continue;
        if (which-- > 0) continue;
        memset(out, 0, sizeof(*out));
        out->dev = dev;
        out->vendor = vendor;
        out->device = device;
        out->class_rev = pci_cfg_read32(0, dev, 0, PCI_CLASS_REVISION);
        return true;
    }
    return false;
}

/* Next port the guest hands out (a bump allocator; nothing is ever freed). */
static u32 next_io = PCI_IO_ASSIGN_BASE;

bool pci_enable_io_bar0(struct pci_dev *d, bool reassign)
{
    u32 bar = pci_cfg_read32(d->bus, d->dev, d->fn, PCI_BAR0);
    if (!(bar & PCI_BAR_IO)) {
        printf("guest: pci %02x:%02x.%x: BAR0 0x%x is not an I/O BAR\n", d->bus, d->dev, d->fn, bar);
        return false;
    }
    u32 base = bar & 0xfffc;
    u16 cmd = pci_cfg_read16(d->bus, d->dev, d->fn, PCI_COMMAND);
    if (!base || reassign) {
        /* Size it with I/O decoding off: all ones, read back the address
         * bits that stick. */
        if (cmd & PCI_COMMAND_IO)
            pci_cfg_write16(d->bus, d->dev, d->fn, PCI_COMMAND, (u16)(cmd & ~PCI_COMMAND_IO));
        pci_cfg_write32(d->bus, d->dev, d->fn, PCI_BAR0, 0xffffffffu);
        u32 mask = pci_cfg_read32(d->bus, d->dev, d->fn, PCI_BAR0) & ~3u;
        if (!(mask & 0xffff0000u)) mask |= 0xffff0000u;      /* a 16-bit I/O decoder */
        u32 size = ~mask + 1;
        if (mask == 0xffff0000u || size > 0x10000 || (size & (size - 1))) {
            printf("guest: pci %02x:%02x.%x: BAR0 sizing read back 0x%x\n", d->bus, d->dev, d->fn, mask);
            pci_cfg_write32(d->bus, d->dev, d->fn, PCI_BAR0, bar);
            return false;
        }
        u32 at = (u32)ALIGN_UP(next_io, size);
        if (at + size > PCI_IO_ASSIGN_END) {
            printf("guest: pci %02x:%02x.%x: no room for a %u-byte I/O BAR\n", d->bus, d->dev, d->fn, size);
            return false;
        }
        next_io = at + size;
        base = at;
        d->io_size = size;
        d->io_assigned = true;
        pci_cfg_write32(d->bus, d->dev, d->fn, PCI_BAR0, base | PCI_BAR_IO);
        u32 now = pci_cfg_read32(d->bus, d->dev, d->fn, PCI_BAR0) & 0xfffc;
        if (now != base) {
            printf("guest: pci %02x:%02x.%x: BAR0 reads 0x%x after writing 0x%x\n", d->bus, d->dev, d->fn,
                   now, base);
            return false;
        }
    } else if (base >= PCI_IO_ASSIGN_BASE && base >= next_io) {
        next_io = base + 4;             /* firmware's: ours go above it (re-aligned by size) */
    }
    d->io_base = (u16)base;
    pci_cfg_write16(d->bus, d->dev, d->fn, PCI_COMMAND, (u16)(cmd | PCI_COMMAND_IO | PCI_COMMAND_MASTER));
    d->irq_line = (u8)pci_cfg_read32(d->bus, d->dev, d->fn, PCI_INTERRUPT_LINE);
    return true;
}
