"""The numbers robot/ and the kernel share, defined once: they are read from the enums
in storybot.h's CDEF block (cffi exposes them as lib constants), so Python cannot drift
from the C; only the names for people are chosen here."""
from typing import Dict

from robot.kernel.lib import lib

# sb_format: what a model file holds
FORMATS: Dict[int, str] = {
    lib.SB_FMT_F32: "f32",
    lib.SB_FMT_Q8_LLAMA2C: "q8-llama2c",
    lib.SB_FMT_Q8: "q8",
    lib.SB_FMT_Q8Q4: "q8q4",
}
# the formats sb_quantize writes
QUANT_FORMATS: Dict[str, int] = {"q8": lib.SB_FMT_Q8, "q8q4": lib.SB_FMT_Q8Q4}
F32: int = lib.SB_FMT_F32
# sb_quantize's default group size (0 given): DEFAULT_GROUP_SIZE where it divides a row,
# else the widest even divisor up to WIDEST_DEFAULT_GROUP
DEFAULT_GROUP_SIZE: int = lib.SB_GROUP_DEFAULT
WIDEST_DEFAULT_GROUP: int = lib.SB_GROUP_WIDEST

# sb_kernel: which implementation of the hot ops a session uses
KERNELS: Dict[str, int] = {"naive": lib.SB_KERNEL_NAIVE, "fast": lib.SB_KERNEL_FAST}


def format_name(code: int) -> str:
    """The name of an sb_format, or its number if this build has no name for it."""
    return FORMATS.get(code, str(code))
