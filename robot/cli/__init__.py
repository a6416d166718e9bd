"""`storybot`: tell a story from the command line, or run one of the subcommands.

    storybot --prompt "Once upon a time" [-n 256 -t 1.0 -p 0.9 -s SEED] [--speak]
    storybot fetch | bench | quantize | eval | listen | serve | ask | stop | status

Every user-fixable problem ends as one sentence on stderr and exit status 2."""
import argparse
import importlib
import json
import os
import resource
import sys

from robot.errors import StorybotError

# subcommand -> module with add_arguments(parser, command) and run(args, command) -> int
SUBCOMMANDS = {
    "fetch": ("robot.models.fetch", "download a model and its tokenizer into the cache"),
    "bench": ("robot.cli.bench", "measure tokens per second, naive against optimised"),
    "quantize": ("robot.models.quantize", "write an int8 (q8) or int8 + 4-bit classifier (q8q4) model"),
    "eval": ("robot.models.evaluate", "quality of a quantised model against fp32 (KL, top-1)"),
    "listen": ("robot.speech.listen", "push-to-talk: record a prompt and recognise it"),
    "serve": ("robot.service.daemon", "run the robot: wait for prompts, tell and speak stories"),
    "ask": ("robot.service.daemon", "send a prompt to a running robot"),
    "stop": ("robot.service.daemon", "stop the story a running robot is telling"),
    "status": ("robot.service.daemon", "what a running robot is doing"),
    "say": ("robot.speech.output", "speak a text aloud: try a voice or a speaker, time a speech backend"),
}


def peak_rss_kb():
    """Peak resident set of this process in KB. VmHWM belongs to this program's own
    address space; ru_maxrss would also carry the parent's peak across fork+exec."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def warn(msg):
    print(f"storybot: warning: {msg}", file=sys.stderr, flush=True)


def add_model_arguments(p):
    p.add_argument("--model", "-m", metavar="PATH", help="llama2.c checkpoint (.bin) or storybot quantised model")
    p.add_argument("-z", "--tokenizer", metavar="PATH", help="tokenizer.bin (default: beside the model)")
    p.add_argument("--kernel", choices=["fast", "naive"], help="op implementations (default: fast)")
    p.add_argument("--kv-f16", action="store_true", default=None, help="half-precision attention cache")
    p.add_argument("--low-rss", action="store_true", default=None,
                   help="keep only the weight slice in use resident (smaller RSS, slightly slower)")
    p.add_argument("--config", metavar="PATH", help="config file (TOML); overrides /etc/storybot/storybot.toml")


def story_parser():
    p = argparse.ArgumentParser(
        prog="storybot",
        description="Tell a story with a llama2.c model. Subcommands: " + ", ".join(SUBCOMMANDS) +
                    " (storybot COMMAND --help).")
    p.add_argument("--prompt", "-i", metavar="TEXT", default="", help="how the story begins ('-': read it from stdin)")
    add_model_arguments(p)
    p.add_argument("-n", "--steps", type=int, help="tokens in the story including the prompt (default 256, 0 = the model's length)")
    p.add_argument("-t", "--temperature", type=float, help="randomness, 0 = always the likeliest word (default 1.0)")
    p.add_argument("-p", "--topp", type=float, help="top-p (nucleus) sampling in [0,1] (default 0.9)")
    p.add_argument("-s", "--seed", type=int, help="random seed (default: the time, a new story every run)")
    p.add_argument("--format", choices=["text", "jsonl"], default="text", help="text, or one JSON object per token")
    add_speech_arguments(p, "speech", "speak each sentence as it is finished", "the spoken story")
    return p


def add_speech_arguments(p, title, speak_help, wav_what):
    """The options speech_out.open_from_args reads, shared by every command that speaks."""
    speak = p.add_argument_group(title)
    speak.add_argument("--speak", action="store_true", default=None, help=speak_help)
    speak.add_argument("--no-speak", dest="speak", action="store_false", help="text only")
    speak.add_argument("--wav", metavar="FILE", help=f"write {wav_what} to a WAV file instead of the speaker")
    speak.add_argument("--voice", help="espeak-ng voice, e.g. en-us+robosoft")
    speak.add_argument("--tts", choices=["espeak", "pyttsx3"], help="speech backend")


def load_config(args):
    from robot import config

    cfg, _ = config.load(getattr(args, "config", None))
    return cfg


def open_model(args, cfg):
    """The model and tokenizer the arguments, config, environment and cache name."""
    from robot.models import fetch
    from robot.kernel.engine import Model

    model_path, tok_path = fetch.resolve(getattr(args, "model", None), getattr(args, "tokenizer", None), cfg)
    kernel = getattr(args, "kernel", None) or cfg["model"]["kernel"]
    kv16 = getattr(args, "kv_f16", None)
    kv16 = cfg["model"]["kv_f16"] if kv16 is None else kv16
    low = getattr(args, "low_rss", None)
    low = cfg["model"]["low_rss"] if low is None else low
    return Model(model_path, tok_path, kernel=kernel, kv_f16=kv16, low_rss=low)


def story_settings(args, cfg, model):
    st = cfg["story"]
    steps = st["steps"] if args.steps is None else args.steps
    temperature = st["temperature"] if args.temperature is None else args.temperature
    topp = st["topp"] if args.topp is None else args.topp
    seed = st["seed"] if args.seed is None else args.seed
    seq = model.config.seq_len
    if steps <= 0:
        if args.steps is not None and steps < 0:
            warn(f"steps {steps} is not a length; telling a story of the model's full {seq} tokens")
        steps = seq
    elif steps > seq:
        warn(f"steps {steps} is more than this model can see; clamped to {seq}")
        steps = seq
    if temperature < 0:
        raise StorybotError(f"temperature must be 0 or more (got {temperature}); 0 means always the likeliest word")
    if not (0.0 <= topp <= 1.0):
        raise StorybotError(f"top-p must be between 0 and 1 (got {topp})")
    if seed is not None and seed < 0:
        raise StorybotError(f"the seed must be a positive whole number (got {seed})")
    return steps, temperature, topp, seed


MAX_PROMPT_BYTES = 1 << 16


def read_prompt(args):
    prompt = args.prompt or ""
    if prompt == "-":
        data = sys.stdin.buffer.read(MAX_PROMPT_BYTES + 1)
        if len(data) > MAX_PROMPT_BYTES:
            raise StorybotError(f"the prompt on stdin is longer than {MAX_PROMPT_BYTES // 1024} KB; a story start should be a sentence or two")
        try:
            prompt = data.decode("utf-8").strip()
        except UnicodeDecodeError as e:
            raise StorybotError(f"the prompt on stdin is not valid UTF-8 (bad byte at offset {e.start}); fix its encoding") from None
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError:
        raise StorybotError("the prompt is not valid UTF-8; type it again or fix the terminal's encoding") from None
    return prompt


def tell(args):
    cfg = load_config(args)
    model = open_model(args, cfg)
    prompt = read_prompt(args)
    steps, temperature, topp, seed = story_settings(args, cfg, model)
    gen = model.generate(prompt, steps=steps, temperature=temperature, topp=topp, seed=seed)

    speaker = None
    want_speech = args.speak if args.speak is not None else False
    if want_speech or args.wav:
        from robot.speech import output as speech_out
        speaker = speech_out.open_from_args(args, cfg)  # None (after one warning) when it cannot speak

    out = sys.stdout
    jsonl = args.format == "jsonl"
    if not jsonl:
        out.write(prompt)
        out.flush()
    stopped = "finished"
    try:
        if speaker is not None:
            speaker.begin(prompt)
        for tok in gen:
            if jsonl:
                out.write(json.dumps({"id": tok.id, "text": tok.text}, ensure_ascii=False) + "\n")
            else:
                out.write(tok.text)
            out.flush()
            if speaker is not None:
                speaker.feed(tok.text)
        if speaker is not None:
            speaker.end()
    except KeyboardInterrupt:
        stopped = "interrupted"
        if speaker is not None:
            speaker.cancel()
    except BrokenPipeError:
        stopped = "broken pipe"
        if speaker is not None:
            speaker.cancel()
    finally:
        if speaker is not None:
            speaker.close()
    summary = {
        "summary": True,
        "tokens": gen.n_generated,
        "tok_per_s": round(gen.tokens_per_second, 3),
        "seconds": round(gen.elapsed, 4),
        "peak_rss_kb": peak_rss_kb(),
        "seed": gen.seed,
        "stop": gen.stop_reason if stopped == "finished" else stopped,
        "model": os.path.basename(model.path),
        "format": model.config.format,
        "kernel": model.kernel,
    }
    if speaker is not None:
        summary["speech"] = speaker.stats()
    try:
        if jsonl:
            out.write(json.dumps(summary) + "\n")
        else:
            out.write("\n")
        out.flush()
    except BrokenPipeError:
        pass
    print(f"achieved tok/s: {summary['tok_per_s']:.2f} ({summary['tokens']} tokens, peak RSS {summary['peak_rss_kb'] / 1024:.1f} MB)",
          file=sys.stderr)
    if speaker is not None and summary.get("speech"):
        speaker.report(sys.stderr)
    return 130 if stopped == "interrupted" else 0


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            command = argv[0]
            modname, help_text = SUBCOMMANDS[command]
            mod = importlib.import_module(modname)
            p = argparse.ArgumentParser(prog=f"storybot {command}", description=help_text)
            mod.add_arguments(p, command)
            args = p.parse_args(argv[1:])
            return mod.run(args, command)
        args = story_parser().parse_args(argv)
        return tell(args)
    except StorybotError as e:
        print(f"storybot: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("storybot: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("storybot: out of memory; use a quantised model (storybot quantize) or free some RAM", file=sys.stderr)
        return 2
