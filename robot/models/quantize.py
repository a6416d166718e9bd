"""`storybot quantize IN.bin OUT --format q8|q8q4 [--group-size N]`

Writes a storybot SBQ1 file (docs/formats.md) from a llama2.c fp32 checkpoint:
  q8    every matrix int8 with one fp32 scale per group;
  q8q4  the same, but the token table / classifier (most of the bytes a small model
        reads per token) in 4-bit groups of 32.
The C library does the work, so no numpy or torch is needed; the output is written
beside OUT and renamed into place, so a failure never leaves half a model behind."""
import argparse
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Tuple

from robot.kernel.lib import ffi, lib
from robot.kernel.engine import FORMATS
from robot import fileio
from robot.errors import StorybotError
from robot.models import discover
from robot.kernel.formats import DEFAULT_GROUP_SIZE, F32, QUANT_FORMATS, WIDEST_DEFAULT_GROUP, format_name
from robot.models import sbq
from robot.words import count

OUT_FORMATS = QUANT_FORMATS    # the formats `storybot quantize` writes (the old name)


def add_arguments(p: argparse.ArgumentParser, command: str = "quantize") -> None:
    p.add_argument("input", metavar="IN.bin", help="llama2.c fp32 checkpoint")
    p.add_argument("output", metavar="OUT", help="quantised model to write")
    p.add_argument("--format", "-f", choices=sorted(OUT_FORMATS), default="q8",
                   help="q8: int8 everywhere; q8q4: int8 layers, 4-bit token table/classifier (default q8)")
    p.add_argument("--group-size", "-g", type=int, default=0, metavar="N",
                   help="values per int8 scale in the layer matrices; must divide dim and hidden_dim "
                        f"(default: {DEFAULT_GROUP_SIZE} where it divides the width, else the widest even "
                        f"divisor up to {WIDEST_DEFAULT_GROUP})")
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    p.add_argument("--calibrate", metavar="TEXT|self",
                   help="round the int8 matrices with GPTQ, fitted to the model's inputs on these stories "
                        "(a text file, or 'self': stories the model tells itself); needs numpy; "
                        "same format and speed, closer to fp32 (docs/formats.md)")
    p.add_argument("--calibrate-tokens", type=int, default=4096, metavar="N",
                   help="calibration positions (default 4096)")
    p.add_argument("-z", "--tokenizer", metavar="PATH", help="tokenizer.bin for --calibrate (default: beside the model)")
    p.add_argument("--progress", action="store_true", default=None,
                   help="progress lines on stderr (default: only when stderr is a terminal)")


class _Opened:
    """An sb_model opened without a tokenizer (quantising needs none)."""

    def __init__(self, path: str) -> None:
        err = ffi.new("sb_error *")
        out = ffi.new("sb_model **")
        fileio.check_regular_file(path, "checkpoint")  # a FIFO would block the C open() forever
        if lib.sb_model_open(os.fsencode(path), out, err) != 0:
            raise StorybotError(ffi.string(err.message).decode("utf-8", "replace"))
        self.handle = ffi.gc(out[0], lib.sb_model_close)
        self.config = lib.sb_model_config(self.handle)


def _divisors(n: int, cap: int = 1024) -> List[int]:
    return [g for g in range(2, min(n, cap) + 1, 2) if n % g == 0]


def check_group_size(gs: int, dim: int, hidden_dim: int) -> None:
    if gs == 0:
        return
    if gs < 0 or gs % 2 or dim % gs or hidden_dim % gs:
        common = [g for g in _divisors(dim) if hidden_dim % g == 0]
        hint = ", ".join(map(str, common[-6:])) if common else "none"
        raise StorybotError(f"group size {gs} must be an even number dividing both dim {dim} and hidden_dim "
                            f"{hidden_dim}; choose one of {hint}, or leave --group-size out")


Log = Callable[[str], None]


def quantize(src: str, dst: str, fmt: str = "q8", group_size: int = 0, force: bool = False,
             calibrate: Optional[str] = None, tokenizer: Optional[str] = None,
             calibrate_tokens: int = 4096, log: Optional[Log] = None,
             progress: Optional[Log] = None) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Writes dst from src; returns (config of src, config of dst) as dicts. With
    calibrate (a text file or "self") the int8 matrices are rounded by GPTQ
    (robot/models/calibrate.py) before the file takes its name. `log` hears what the
    calibration is fitted to, `progress` each step of a long run."""
    if fmt not in OUT_FORMATS:
        raise StorybotError(f"unknown format {fmt!r}; choose q8 or q8q4")
    if not os.path.exists(src):
        raise StorybotError(f"cannot find the checkpoint {src}; give the path of a llama2.c fp32 .bin file")
    if os.path.isdir(dst):
        raise StorybotError(f"{dst} is a directory; give the path of the file to write")
    if os.path.exists(dst):
        if os.path.samefile(src, dst):
            raise StorybotError(f"{dst} is the input checkpoint itself; write the quantised model to another file")
        if not force:
            raise StorybotError(f"{dst} already exists; pass --force to overwrite it or choose another name")
    parent = os.path.dirname(os.path.abspath(dst))
    if not os.path.isdir(parent):
        raise StorybotError(f"the folder {parent} does not exist; create it first or choose another output path")
    m = _Opened(src)
    c = m.config
    if c.format != F32:
        raise StorybotError(f"{src} is already quantised ({FORMATS.get(c.format, c.format)}); "
                            "quantise the original fp32 checkpoint instead")
    check_group_size(group_size, c.dim, c.hidden_dim)
    if calibrate is not None and calibrate_tokens <= 0:
        raise StorybotError(f"--calibrate-tokens must be a positive number (got {calibrate_tokens})")
    err = ffi.new("sb_error *")
    # the file is finished beside dst and takes its name last, so a reader of dst (the
    # daemon between stories) sees the old model or the new one, never a half-written one
    target = dst + ".writing"
    if progress:
        progress(f"writing {fmt} weights to {dst}")
    if lib.sb_quantize(m.handle, os.fsencode(target), OUT_FORMATS[fmt], group_size, err) != 0:
        raise StorybotError(ffi.string(err.message).decode("utf-8", "replace"))
    try:
        if calibrate is not None:
            _calibrate(src, target, calibrate, tokenizer, calibrate_tokens, log, progress)
        tok = tokenizer or discover.find_tokenizer(src, c.vocab_size, None)
        if tok:  # so `storybot -m dst` finds it wherever the two are copied together
            discover.record_tokenizer(target, tok)
        os.replace(target, dst)
    finally:
        if os.path.exists(target):
            os.unlink(target)
    before = _summary(c)
    after = _summary(_Opened(dst).config)
    after["groups"] = sbq_group_sizes(dst)
    return before, after


def _calibrate(src: str, path: str, source: str, tokenizer: Optional[str], max_tokens: int, log: Optional[Log],
               progress: Optional[Log] = None) -> None:
    from robot.models import calibrate
    from robot.models.fetch import tokenizer_for
    tok = tokenizer or tokenizer_for(src)
    seqs = calibrate.calibration_sequences(src, tok, source, max_tokens)
    if log:
        log(f"calibrating on {count(sum(map(len, seqs)), 'position')} of {count(len(seqs), 'story')}")
    ck = calibrate._Fp32(src)
    calibrate.rewrite(path, ck, calibrate.hessians(ck, seqs, progress), progress)


def sbq_group_sizes(path: str) -> Tuple[int, int, int]:
    """(dim-wide rows, hidden-wide rows, token table/classifier) group sizes of an SBQ1 file."""
    h = sbq.read_header(path)
    return h.gs_dim, h.gs_hid, h.gs_cls


def _summary(c: Any) -> Dict[str, Any]:
    return {"format": format_name(c.format), "group_size": c.group_size,
            "file_bytes": c.file_bytes, "weight_bytes_per_token": c.weight_bytes_per_token}


def _mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB"


def _stderr(msg: str) -> None:
    print(f"storybot quantize: {msg}", file=sys.stderr, flush=True)


def progress_log(wanted: Optional[bool]) -> Optional[Log]:
    """Where progress lines go: stderr when asked (--progress) or when a person is
    watching it (a terminal); nowhere in scripts and logs."""
    return _stderr if wanted or (wanted is None and sys.stderr.isatty()) else None


def run(args: argparse.Namespace, command: str = "quantize") -> int:
    before, after = quantize(args.input, args.output, args.format, args.group_size, args.force,
                             calibrate=args.calibrate, tokenizer=args.tokenizer,
                             calibrate_tokens=args.calibrate_tokens, log=_stderr, progress=progress_log(args.progress))
    out = sys.stdout
    print(f"{args.input}: {before['format']}, {_mb(before['file_bytes'])}, "
          f"{_mb(before['weight_bytes_per_token'])} of weights read per token", file=out)
    g = after["groups"]
    print(f"{args.output}: {after['format']} (groups {g[0]}/{g[1]}/{g[2]} for dim/hidden/classifier rows), "
          f"{_mb(after['file_bytes'])}, "
          f"{_mb(after['weight_bytes_per_token'])} of weights read per token", file=out)
    print(f"file {before['file_bytes'] / after['file_bytes']:.2f}x smaller, "
          f"{before['weight_bytes_per_token'] / after['weight_bytes_per_token']:.2f}x fewer bytes per token", file=out)
    return 0
