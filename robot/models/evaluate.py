"""`storybot eval`: how far a quantised model's predictions are from the fp32 model's.

    storybot eval --model stories260K.bin -z tok512.bin --text tinystories_val_1000.txt
    storybot eval --model m.bin --quantized m.q8 m.q8q4 --tokens 5000
    storybot eval --shape stories15M -z tokenizer.bin --text ... --tokens 2000

Teacher-forced: every story is encoded, and at each position every model is fed the
true token, so the models see the same context and only their next-token
distributions are compared: mean KL(p_fp32 || p_quant) in nats per token, how often
the most likely token agrees (top-1), and each model's perplexity on the real next
token. With no --quantized files, q8 and q8q4 versions are written to a temporary
folder first. numpy makes this faster when installed; plain Python works too."""
import argparse
import json
import math
import os
import sys
import tempfile
import time
from typing import IO, Any, Dict, List, Sequence, Tuple

from robot import fileio
from robot.errors import StorybotError

STORY_END = "<|endoftext|>"
DEFAULT_TEXT = os.path.join("tests", "data", "tinystories_val_1000.txt")  # in a clone of the project

_np: Any
try:  # optional: a dev tool may use numpy, the robot never needs it
    import numpy as _np
except ImportError:  # pragma: no cover - exercised on the board
    _np = None


def add_arguments(p: argparse.ArgumentParser, command: str = "eval") -> None:
    p.add_argument("--model", "-m", metavar="FP32.bin", help="the fp32 reference checkpoint")
    p.add_argument("--shape", metavar="NAME", help="instead of --model, seeded random weights of this shape "
                   "(e.g. stories15M; needs numpy)")
    p.add_argument("--seed", type=int, default=0, help="seed of the --shape weights (default 0)")
    p.add_argument("--quantized", "-q", nargs="+", metavar="Q.bin", default=[],
                   help="quantised models to compare (default: q8 and q8q4 made from --model in a temp folder)")
    p.add_argument("--group-size", "-g", type=int, default=0, help="group size when quantising here")
    p.add_argument("-z", "--tokenizer", metavar="PATH", help="tokenizer.bin (default: beside the model)")
    p.add_argument("--text", metavar="FILE", help="stories separated by <|endoftext|> (default: " + DEFAULT_TEXT + ")")
    p.add_argument("--tokens", "-n", type=int, default=20000, help="stop after this many predicted positions (default 20000)")
    p.add_argument("--kernel", choices=["fast", "naive"], default="fast", help="op implementations (default fast)")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")


def read_stories(path: str) -> List[str]:
    if os.path.exists(path):  # a FIFO would block open() forever, a device never end the read
        fileio.check_regular_file(path, "text file")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise StorybotError(f"cannot find the text file {path}; give --text FILE with stories separated by {STORY_END}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise StorybotError(f"cannot read the text file {path} ({e}); give a UTF-8 text file with --text") from None
    stories = [s.strip() for s in text.split(STORY_END)]
    stories = [s for s in stories if s]
    if not stories:
        raise StorybotError(f"{path} holds no text; give a file of stories separated by {STORY_END}")
    return stories


def _log_softmax_np(mv: Any) -> Any:
    x = _np.frombuffer(mv, dtype=_np.float32).astype(_np.float64)
    x -= x.max()
    x -= math.log(_np.exp(x).sum())
    return x


def _log_softmax_py(mv: Any) -> List[float]:
    x = list(mv)
    m = max(x)
    lse = m + math.log(sum(math.exp(v - m) for v in x))
    return [v - lse for v in x]


class _Tally:
    def __init__(self) -> None:
        self.n = 0
        self.kl = 0.0
        self.kl_max = 0.0
        self.agree = 0
        self.nll = 0.0

    def add_nll(self, lp: float) -> None:
        self.nll -= lp
        self.n += 1


def compare(ref: Any, models: Sequence[Any], stories: Sequence[str], max_tokens: int) -> Tuple[List["_Tally"], int]:
    """Teacher-forced comparison; returns a _Tally for ref and one per model."""
    np_ok = _np is not None
    lsm: Any = _log_softmax_np if np_ok else _log_softmax_py
    seq = ref.config.seq_len
    tallies = [_Tally() for _ in range(len(models) + 1)]
    done = 0
    for story in stories:
        toks = ref.encode(story)[:seq]
        for pos in range(len(toks) - 1):
            tok, nxt = toks[pos], toks[pos + 1]
            lp = lsm(ref.forward(tok, pos))
            tallies[0].add_nll(lp[nxt])
            if np_ok:
                p = _np.exp(lp)
                top = int(lp.argmax())
            else:
                p = [math.exp(v) for v in lp]
                top = max(range(len(lp)), key=lp.__getitem__)
            for t, m in zip(tallies[1:], models):
                lq = lsm(m.forward(tok, pos))
                t.add_nll(lq[nxt])
                if np_ok:
                    kl = float(_np.dot(p, lp - lq))
                    qtop = int(lq.argmax())
                else:
                    kl = sum(pi * (a - b) for pi, a, b in zip(p, lp, lq))
                    qtop = max(range(len(lq)), key=lq.__getitem__)
                kl = max(kl, 0.0)  # rounding can make a near-zero KL slightly negative
                t.kl += kl
                t.kl_max = max(t.kl_max, kl)
                t.agree += qtop == top
            done += 1
            if done >= max_tokens:
                return tallies, done
    return tallies, done


def _default_text() -> str:
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(here, DEFAULT_TEXT)


def run(args: argparse.Namespace, command: str = "eval") -> int:
    from robot.models import quantize
    from robot.kernel.engine import Model

    if bool(args.model) == bool(args.shape):
        raise StorybotError("give either --model FP32.bin or --shape NAME (random weights), not both or neither")
    if args.tokens <= 0:
        raise StorybotError(f"--tokens must be a positive number of positions (got {args.tokens})")
    for path, what in [(args.model, "model file"), (args.tokenizer, "tokenizer file")] + [(q, "model file") for q in args.quantized]:
        if path:
            fileio.check_regular_file(path, what)
    stories = read_stories(args.text or _default_text())
    with tempfile.TemporaryDirectory(prefix="storybot-eval-") as tmp:
        model_path = args.model
        tok_path = args.tokenizer
        if model_path and tok_path is None:
            from robot.models.fetch import tokenizer_for
            tok_path = tokenizer_for(model_path)  # the same rule as a story's
        if args.shape:
            from robot.models import modelgen
            if args.shape not in modelgen.SHAPES:
                raise StorybotError(f"unknown shape {args.shape!r}; choose one of {', '.join(modelgen.SHAPES)}")
            try:
                model_path = modelgen.write_shape(os.path.join(tmp, f"{args.shape}.bin"), args.shape, seed=args.seed)
            except ImportError:
                raise StorybotError("--shape needs numpy to make random weights; pip install numpy or use --model") from None
            if tok_path is None:
                tok_path = modelgen.write_tokenizer(os.path.join(tmp, "tokenizer.bin"), modelgen.SHAPES[args.shape][5])
        quantized = list(args.quantized)
        if not quantized:
            for fmt in ("q8", "q8q4"):
                out = os.path.join(tmp, f"model.{fmt}")
                quantize.quantize(model_path, out, fmt, args.group_size)
                quantized.append(out)
        ref = Model(model_path, tok_path, kernel=args.kernel)
        models = [Model(q, ref.tokenizer, kernel=args.kernel) for q in quantized]
        if ref.config.format != "f32":
            raise StorybotError(f"{model_path} is quantised ({ref.config.format}); the reference must be the fp32 checkpoint")
        for q, m in zip(quantized, models):
            if m.config[:7] != ref.config[:7]:
                raise StorybotError(f"{q} has a different shape from {model_path}; compare a model with its own quantised versions")
        t0 = time.perf_counter()
        if not args.json:
            print(f"teacher-forcing up to {args.tokens} positions of {len(stories)} stories "
                  f"({'numpy' if _np is not None else 'plain Python'}, kernel {args.kernel})...", file=sys.stderr)
        tallies, n = compare(ref, models, stories, args.tokens)
        secs = time.perf_counter() - t0
        names = [os.path.basename(p) for p in [model_path] + quantized]
        if args.shape:
            names = [f"{args.shape}(seed {args.seed})" + ("" if m is ref else "." + m.config.format) for m in [ref] + models]
        rows = [_row(name, m.config, t, m is ref) for name, m, t in zip(names, [ref] + models, tallies)]
    result = {"positions": n, "seconds": round(secs, 2), "text": os.path.basename(args.text or _default_text()),
              "kernel": args.kernel, "models": rows}
    if args.json:
        print(json.dumps(result))
    else:
        _table(rows, n, secs, sys.stdout)
    return 0


def _row(name: str, c: Any, t: _Tally, is_ref: bool) -> Dict[str, Any]:
    """One model's line of the result: its size and how close it came."""
    row: Dict[str, Any] = {"model": name, "format": c.format, "file_bytes": c.file_bytes,
                           "weight_bytes_per_token": c.weight_bytes_per_token,
                           "perplexity": math.exp(t.nll / t.n) if t.n else float("nan")}
    if not is_ref:
        row.update(kl_mean=t.kl / t.n if t.n else float("nan"), kl_max=t.kl_max,
                   top1=t.agree / t.n if t.n else float("nan"))
    return row


def _table(rows: List[Dict[str, Any]], n: int, secs: float, out: IO[str]) -> None:
    print(f"{n} positions in {secs:.1f} s", file=out)
    print(f"{'model':<28} {'format':<10} {'file MB':>8} {'wMB/tok':>8} {'ppl':>8} {'KL nat/tok':>11} {'KL max':>8} {'top-1':>7}",
          file=out)
    for r in rows:
        kl = f"{r['kl_mean']:11.5f} {r['kl_max']:8.4f} {100 * r['top1']:6.2f}%" if "kl_mean" in r else f"{'-':>11} {'-':>8} {'-':>7}"
        print(f"{r['model'][:28]:<28} {r['format']:<10} {r['file_bytes'] / 1e6:8.3f} "
              f"{r['weight_bytes_per_token'] / 1e6:8.3f} {r['perplexity']:8.3f} {kl}", file=out)
