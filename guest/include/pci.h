/* PCI configuration space through configuration mechanism #1 (port 0xCF8
 * CONFIG_ADDRESS, 0xCFC-0xCFF CONFIG_DATA), from ring 3 (the TSS I/O bitmap
 * allows every port). Only bus 0, function 0 of devices 0-31 is scanned: what
 * Bulkhead and QEMU's pc/q35 machines put there. Each config access is two
 * port accesses, i.e. two VM exits. */
#ifndef BULKHEAD_PCI_H
#define BULKHEAD_PCI_H
#include "types.h"

#define PCI_VENDOR_ID        0x00     /* u16; device id at 0x02 */
#define PCI_COMMAND          0x04     /* u16; status at 0x06 */
#define PCI_CLASS_REVISION   0x08
#define PCI_BAR0             0x10
#define PCI_INTERRUPT_LINE   0x3c

#define PCI_COMMAND_IO         0x0001
#define PCI_COMMAND_MEMORY     0x0002
#define PCI_COMMAND_MASTER     0x0004

#define PCI_BAR_IO             0x1      /* bit 0 of an I/O-space BAR */
/* Where the guest puts I/O BARs nobody assigned: above every legacy port
 * (Bulkhead's PCI I/O window is 0xC000-0xFFFF). */
#define PCI_IO_ASSIGN_BASE     0xc000
#define PCI_IO_ASSIGN_END      0x10000

struct pci_dev {
    u8 bus, dev, fn;
    u16 vendor, device;
    u32 class_rev;
    u16 io_base;          /* BAR 0 (I/O) after pci_enable_io_bar0 */
    u32 io_size;          /* 0 unless the guest sized it */
    bool io_assigned;     /* the guest sized and assigned it (it was 0, or reassign) */
    u8 irq_line;
};

u32 pci_cfg_read32(u8 bus, u8 dev, u8 fn, u8 reg);
void pci_cfg_write32(u8 bus, u8 dev, u8 fn, u8 reg, u32 v);
u16 pci_cfg_read16(u8 bus, u8 dev, u8 fn, u8 reg);
void pci_cfg_write16(u8 bus, u8 dev, u8 fn, u8 reg, u16 v);

/* Is there a mechanism-#1 host bridge? (CONFIG_ADDRESS reads back what was
 * written; 2 exits.) Cached after the first call. */
bool pci_present(void);
/* The `which`-th (0 = first) function 0 on bus 0 with this vendor/device id;
 * false if none (or no PCI). Reads only the id dword of each slot until it
 * finds it. */
bool pci_find(u16 vendor, u16 device, int which, struct pci_dev *out);
/* Make BAR 0 (an I/O BAR) usable. If it reads 0 after masking (nobody
 * assigned it; or always with reassign), size it with I/O decoding off
 * (write all ones, read back; a 16-bit decoder leaves the upper half 0) and
 * assign the next free size-aligned port from PCI_IO_ASSIGN_BASE. A BAR that
 * firmware assigned is kept, not sized (io_size stays 0). Then set COMMAND
 * I/O space + bus master, keeping the other bits. Fills io_base, io_size,
 * io_assigned, irq_line. false (printing why) if BAR 0 is not an I/O BAR,
 * sizes oddly, or the window is full. */
bool pci_enable_io_bar0(struct pci_dev *d, bool reassign);
#endif
