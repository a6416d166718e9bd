"""Where models come from: `storybot fetch NAME` downloads Karpathy's tinyllamas
checkpoints and their tokenizer into the cache, resuming and verifying sha256; and
resolve() decides which model a story uses:

    --model  >  [model] path in the config  >  $STORYBOT_MODEL  >  the cache
             >  the built-in stories260K (robot/data/, 1 MB: a story with no network)

The download is optional: every file can be given as a local path instead, and a
mirror works through [model] fetch_base_url or --base-url."""
import argparse
import os
import sys
import time
from typing import IO, Any, Mapping, Optional, Tuple

from robot.config import expand
from robot.errors import StorybotError
from robot.models import discover

TOKENIZER_URL = "https://github.com/karpathy/llama2.c/raw/master/tokenizer.bin"

# name -> (file in the cache, path under the base URL, sha256 or None, size or None, tokenizer name)
KNOWN = {
    "stories15M": ("stories15M.bin", "stories15M.bin",
                   "cd590644d963867a2b6e5a1107f51fad663c41d79c149fbecbbb1f95fa81f49a", 60816028, "tokenizer.bin"),
    "stories42M": ("stories42M.bin", "stories42M.bin", None, None, "tokenizer.bin"),
    "stories110M": ("stories110M.bin", "stories110M.bin", None, None, "tokenizer.bin"),
    "stories260K": ("stories260K.bin", "stories260K/stories260K.bin",
                    "b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696", 1056540, "tok512.bin"),
}
TOKENIZERS = {
    "tokenizer.bin": (None, "50a52ef822ee9e83de5ce9d0be0a025a773d019437f58b5ff9dcafb063ece361", 433869),
    "tok512.bin": ("stories260K/tok512.bin", "037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312", 6227),
}
# The last resort, shipped inside the package (robot/data/README.md).
BUILTIN = (discover.BUILTIN_MODEL, discover.BUILTIN_TOKENIZER)
_told_builtin = False


def cache_dir(cfg: Optional[Mapping[str, Any]] = None) -> str:
    env = os.environ.get("STORYBOT_CACHE")
    if env:
        return expand(env)
    return expand(cfg["model"]["cache_dir"] if cfg else "~/.cache/storybot")


def tokenizer_for(model_path: str, cfg: Optional[Mapping[str, Any]] = None) -> str:
    """The model's tokenizer by discover's rules 3-4, or a StorybotError with the fix."""
    from robot.kernel.engine import peek_config  # the kernel validates the header
    vocab = peek_config(model_path).vocab_size
    tok = discover.find_tokenizer(model_path, vocab, cache_dir(cfg))
    if not tok:
        raise StorybotError(f"no tokenizer with {vocab} tokens found beside {model_path} or in {cache_dir(cfg)} "
                            f"(looked for the one the model records, tok{vocab}.bin and tokenizer.bin); "
                            "pass -z PATH, or run 'storybot fetch stories15M' to get tokenizer.bin")
    return tok


def resolve(model: Optional[str] = None, tokenizer: Optional[str] = None,
            cfg: Optional[Mapping[str, Any]] = None) -> Tuple[str, str]:
    """(model path, tokenizer path) by robot/models/discover.py's rules, or a
    StorybotError saying what is missing and the fix."""
    cfg_model = expand(cfg["model"]["path"]) if cfg else ""
    cfg_tok = expand(cfg["model"]["tokenizer"]) if cfg else ""
    path = model or cfg_model or expand(os.environ.get("STORYBOT_MODEL", "")) or discover.newest_cached_model(cache_dir(cfg))
    if not path and all(os.path.isfile(p) for p in BUILTIN):
        _tell_builtin()
        return BUILTIN[0], tokenizer or BUILTIN[1]
    if not path:
        raise StorybotError(f"no model found (none given with --model, in the config, in $STORYBOT_MODEL or in {cache_dir(cfg)}); "
                            "run 'storybot fetch stories15M' or pass --model PATH")
    if not os.path.exists(path):
        raise StorybotError(f"model file {path} does not exist; check the path or run 'storybot fetch stories15M'")
    return path, tokenizer or cfg_tok or tokenizer_for(path, cfg)


def _tell_builtin() -> None:
    """Once per process (a daemon resolves again at every reload): which model, and the fix."""
    global _told_builtin
    if not _told_builtin:
        _told_builtin = True
        print("storybot: no model configured or downloaded, so the built-in stories260K tells the story "
              "(tiny, simple stories); run 'storybot fetch stories15M' for the real one", file=sys.stderr)


# ----------------------------------------------------------------- download


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


class _Progress:
    def __init__(self, name: str, total: Optional[int], stream: IO[str]) -> None:
        self.name, self.total, self.stream = name, total, stream
        self.last = 0.0
        self.tty = stream.isatty()

    def update(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < (0.1 if self.tty else 2.0):
            return
        self.last = now
        if self.total:
            pct = 100.0 * done / self.total
            bar = "#" * int(pct / 4)
            line = f"{self.name}: [{bar:<25}] {pct:5.1f}% {done / 1e6:.1f}/{self.total / 1e6:.1f} MB"
        else:
            line = f"{self.name}: {done / 1e6:.1f} MB"
        self.stream.write(("\r" if self.tty else "") + line + ("\n" if final or not self.tty else ""))
        self.stream.flush()


def download(url: str, dest: str, sha256: Optional[str] = None, size: Optional[int] = None,
             stream: IO[str] = sys.stderr, timeout: float = 30) -> str:
    """Downloads url to dest through dest.part, resuming a previous partial file with an
    HTTP Range request; verifies the sha256 before the file takes its real name."""
    # imported here: urllib pulls in ssl and email, megabytes a story never needs
    import urllib.error
    import urllib.request

    if os.path.isfile(dest) and (sha256 is None or sha256_file(dest) == sha256):
        stream.write(f"{os.path.basename(dest)}: already here\n")
        return dest
    part = dest + ".part"
    have = os.path.getsize(part) if os.path.isfile(part) else 0
    if size and have > size:
        os.remove(part)
        have = 0
    req = urllib.request.Request(url, headers={"User-Agent": "storybot-fetch"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the partial file is already complete
            resp = None
        else:
            raise StorybotError(f"download of {url} failed: HTTP {e.code} {e.reason}; check [model] fetch_base_url or try again later") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise StorybotError(f"cannot reach {url} ({reason}); check the network or set [model] fetch_base_url to a mirror, "
                            "or copy the model file by hand and pass --model PATH") from None
    if resp is not None:
        with resp:
            status = getattr(resp, "status", 200)
            if have and status != 206:
                have = 0  # the server ignored the range: start again
            total = resp.headers.get("Content-Length")
            total = int(total) + have if total and total.isdigit() else size
            bar = _Progress(os.path.basename(dest), total, stream)
            try:
                with open(part, "ab" if have else "wb") as f:
                    done = have
                    while True:
                        try:
                            block = resp.read(1 << 16)
                        except OSError as e:
                            raise StorybotError(f"the download of {url} broke off at {done} bytes ({e}); run the same command again to resume") from None
                        if not block:
                            break
                        f.write(block)
                        done += len(block)
                        bar.update(done)
                    bar.update(done, final=True)
            except OSError as e:
                raise StorybotError(f"cannot write {part}: {e.strerror}; free some disk space and run the command again to resume") from None
    if size is not None and os.path.getsize(part) < size:
        raise StorybotError(f"the download of {url} stopped at {os.path.getsize(part)} of {size} bytes; run the same command again to resume")
    if sha256 is not None:
        got = sha256_file(part)
        if got != sha256:
            os.remove(part)
            raise StorybotError(f"{os.path.basename(dest)} downloaded from {url} has the wrong sha256 ({got[:12]}…, expected {sha256[:12]}…); "
                                "the file was removed: check the mirror and fetch again")
    os.replace(part, dest)
    return dest


def add_arguments(p: argparse.ArgumentParser, command: str = "fetch") -> None:
    p.add_argument("name", nargs="?", default="stories15M", choices=sorted(KNOWN),
                   help="which model (default stories15M)")
    p.add_argument("--base-url", help="download from this URL prefix instead of the configured one")
    p.add_argument("--tokenizer-url", help="where tokenizer.bin comes from (default: the llama2.c repository)")
    p.add_argument("--dir", help="put the files here instead of the cache")
    p.add_argument("--config", metavar="PATH", help="config file (TOML)")


def run(args: argparse.Namespace, command: str = "fetch") -> int:
    from robot import config

    cfg, _ = config.load(args.config)
    dest_dir = expand(args.dir) if args.dir else cache_dir(cfg)
    try:
        os.makedirs(dest_dir, exist_ok=True)
    except OSError as e:
        raise StorybotError(f"cannot create the model folder {dest_dir}: {e.strerror}") from None
    base = (args.base_url or cfg["model"]["fetch_base_url"]).rstrip("/")
    fname, rel, sha, size, tok = KNOWN[args.name]
    download(f"{base}/{rel}", os.path.join(dest_dir, fname), sha, size)
    tok_rel, tok_sha, tok_size = TOKENIZERS[tok]
    default_base = str(config.defaults()["model"]["fetch_base_url"]).rstrip("/")
    if args.tokenizer_url:
        tok_url = args.tokenizer_url
    elif tok_rel is not None:
        tok_url = f"{base}/{tok_rel}"
    else:  # a mirror holds everything; the real tokenizer.bin lives in the llama2.c repository
        tok_url = TOKENIZER_URL if base == default_base else f"{base}/{tok}"
    download(tok_url, os.path.join(dest_dir, tok), tok_sha, tok_size)
    print(f"{args.name} is ready in {dest_dir}")
    return 0
