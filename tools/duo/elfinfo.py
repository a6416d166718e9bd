"""What a shared library needs from the system, read straight from its ELF file.

The bundle's kernel must load into the Duo's musl Python although it is built with a
glibc cross compiler, so bundle.py checks two things no compiler flag can promise:
the library names no libraries (DT_NEEDED) and every symbol it leaves undefined is
one musl's libc.so exports. Plain struct parsing, so no binutils for the target are
needed."""
import struct

EM_RISCV = 243
_SHT_DYNSYM = 11
_DT_NEEDED, _DT_SONAME = 1, 14
_SHN_UNDEF = 0


class ElfInfo:
    def __init__(self, machine, needed, soname, undefined, defined):
        self.machine = machine
        self.needed = needed          # DT_NEEDED names
        self.soname = soname
        self.undefined = undefined    # names the library expects the process to provide
        self.defined = defined        # names it exports


def read(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError(f"{path} is not a 64-bit little-endian ELF file")
    machine, = struct.unpack_from("<H", data, 18)
    shoff, = struct.unpack_from("<Q", data, 40)
    shentsize, shnum = struct.unpack_from("<HH", data, 58)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]

    def strtab(index, off):
        base = sections[index][4]
        end = data.index(b"\0", base + off)
        return data[base + off:end].decode()

    needed, soname, undefined, defined = [], None, set(), set()
    for name, typ, flags, addr, off, size, link, info, align, entsize in sections:
        if typ == _SHT_DYNSYM:
            for i in range(1, size // 24):
                st_name, st_info, st_other, st_shndx = struct.unpack_from("<IBBH", data, off + i * 24)
                sym = strtab(link, st_name)
                if not sym:
                    continue
                if st_info >> 4 not in (1, 2):  # only GLOBAL and WEAK symbols link across objects
                    continue
                (undefined if st_shndx == _SHN_UNDEF else defined).add(sym)
        elif typ == 6:  # SHT_DYNAMIC
            for i in range(size // 16):
                tag, val = struct.unpack_from("<qQ", data, off + i * 16)
                if tag == _DT_NEEDED:
                    needed.append(strtab(link, val))
                elif tag == _DT_SONAME:
                    soname = strtab(link, val)
                elif tag == 0:
                    break
    return ElfInfo(machine, needed, soname, sorted(undefined), sorted(defined))
