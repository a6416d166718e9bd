"""Fidelity to run.c: how much of llama2.c's own story a quantised model retells.

    python3 tools/fidelity.py [--golden tests/data/golden_run_c.json] [--models DIR] [--formats q8 q8q4] [--calibrate self]

For every case in run.c's golden file (model, prompt, temperature, top-p, seed and the
ids run.c sampled), the fp32 model is quantised here and the same story is generated
through the kernel: the tokens it shares with run.c before the first difference, and
how many cases come out identical to the end. fp32 itself is the control: it must
retell every case exactly. Sampled stories diverge for good at the first different
token, so the shared prefix is the measure a listener would notice.

The golden file's models are found in --models, else where the tests find them: the
package's stories260K, tests/data, and the random-weight ones rebuilt by modelgen.
Where the golden file or a model is missing it says so and exits 2.
"""
import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from robot.models import quantize  # noqa: E402
from robot.kernel.engine import Model  # noqa: E402
from robot.models import modelgen  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_DIRS = [os.path.join(ROOT, "robot", "data"), os.path.join(ROOT, "tests", "data")]


def find(name, models_dir, tmp):
    """A golden case's model or tokenizer file, or None."""
    for d in ([models_dir] if models_dir else DATA_DIRS):
        if os.path.isfile(os.path.join(d, name)):
            return os.path.join(d, name)
    if not models_dir and name.endswith(".bin") and name[:-4] in modelgen.FIXTURES:
        path = os.path.join(tmp, name)
        return path if os.path.isfile(path) else modelgen.write_fixture(path, name[:-4])
    return None


def retell(path, tok, case):
    m = Model(path, tok)
    got = [t.id for t in m.generate(case["prompt"], steps=case["steps"], temperature=case["temperature"],
                                    topp=case["topp"], seed=case["seed"])]
    want = case["generated_tokens"]
    same = 0
    for a, b in zip(got, want):
        if a != b:
            break
        same += 1
    return same, len(want), got[:len(want)] == want and len(got) >= len(want)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--golden", default=os.path.join(ROOT, "tests", "data", "golden_run_c.json"))
    ap.add_argument("--models", help="folder of the golden file's models and tokenizers (default: the tests' own)")
    ap.add_argument("--formats", nargs="+", default=["q8", "q8q4"])
    ap.add_argument("--calibrate", metavar="TEXT|self",
                    help="also q8 rounded by GPTQ on these stories (storybot quantize --calibrate), as q8-gptq")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if not os.path.isfile(a.golden):
        print(f"fidelity: no golden file at {a.golden}; pass --golden", file=sys.stderr)
        return 2
    with open(a.golden, encoding="utf-8") as f:
        cases = json.load(f)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for case in cases:
            src, tok = find(case["model"], a.models, tmp), find(case["tokenizer"], a.models, tmp)
            if not src or not tok:
                print(f"fidelity: {case['model'] if not src else case['tokenizer']} is not in {a.models or 'the test data'}; "
                      "pass --models", file=sys.stderr)
                return 2
            if case["model"] not in files:
                files[case["model"]] = {"f32": src}
                for fmt in a.formats:
                    out = os.path.join(tmp, f"{case['model']}.{fmt}")
                    quantize.quantize(src, out, fmt)
                    files[case["model"]][fmt] = out
                if a.calibrate:
                    out = os.path.join(tmp, f"{case['model']}.q8-gptq")
                    quantize.quantize(src, out, "q8", calibrate=a.calibrate,
                                      tokenizer=tok)
                    files[case["model"]]["q8-gptq"] = out
            for fmt, path in files[case["model"]].items():
                same, total, whole = retell(path, tok, case)
                r = rows.setdefault((case["model"], fmt), [0, 0, 0, 0])
                r[0] += same
                r[1] += total
                r[2] += whole
                r[3] += 1
    out = [dict(model=mdl, format=fmt, shared_tokens=r[0], run_c_tokens=r[1], identical_stories=r[2], stories=r[3])
           for (mdl, fmt), r in rows.items()]
    if a.json:
        print(json.dumps(out, indent=1))
    else:
        print("| model | format | tokens shared with run.c before the first difference | stories identical to the end |")
        print("|---|---|---|---|")
        for o in out:
            print(f"| {o['model']} | {o['format']} | {o['shared_tokens']} of {o['run_c_tokens']} "
                  f"({o['shared_tokens'] / o['run_c_tokens']:.1%}) | {o['identical_stories']} of {o['stories']} |")
    bad = [o for o in out if o["format"] == "f32" and o["identical_stories"] != o["stories"]]
    if bad:
        print("fidelity: the fp32 control did not retell every case exactly", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
