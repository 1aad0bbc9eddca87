#!/usr/bin/env python3
"""Writes tests/llm/fixtures/smollm2_ref.txt: reference token ids and logits
of SmolLM2-135M-Instruct (Q4_1 GGUF) computed by llama.cpp, an independent
implementation, through llama-cpp-python (pip install llama-cpp-python; it
builds llama.cpp from the sdist, CPU only is fine).

    python3 scripts/make_llm_fixture.py [MODEL.gguf]

Format (text, one record per line; strings hex-encoded UTF-8):
    tok <hex text> <n> <id>...          tokenization with special tokens parsed
    prompt <n> <id>...                  the ids the logits are computed for
    logits <pos> <logsumexp> <k> (<id> <logit>)*k   top-k at position pos
"""
import math
import sys

import llama_cpp

TEXTS = [
    "Hello world",
    "The Debian GNU/Linux FAQ, version 11.0 (January 2021).",
    "  leading spaces,\ttabs and\n\nnewlines   \n",
    "don't we'll they're I'M can't",
    "Numbers: 1234567 3.14159 -42 0x1F 2nd",
    "caf\u00e9 na\u00efve \u2014 \u201cquotes\u201d \u00a9 1996-2021 \u65e5\u672c\u8a9e \U0001F600",
    "apt-get install debian-faq && zcat /usr/share/doc/debian/FAQ/debian-faq.en.txt.gz",
    "<|im_start|>user\nWhat is Debian?<|im_end|>\n<|im_start|>assistant\n",
]

PROMPT = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
          "trained by Hugging Face<|im_end|>\n<|im_start|>user\n"
          "What is Debian GNU/Linux?<|im_end|>\n<|im_start|>assistant\n")

TOPK = 64
LAST = 4


def main():
    model = sys.argv[1] if len(sys.argv) > 1 else ".model/SmolLM2-135M-Instruct.Q4_1.gguf"
    out = sys.argv[2] if len(sys.argv) > 2 else "tests/llm/fixtures/smollm2_ref.txt"
    llm = llama_cpp.Llama(model_path=model, n_ctx=512, n_threads=2,
                          logits_all=True, verbose=False)
    lines = [f"# llama.cpp via llama-cpp-python {llama_cpp.__version__}, {model}"]
    for t in TEXTS:
        ids = llm.tokenize(t.encode(), add_bos=False, special=True)
        lines.append(f"tok {t.encode().hex()} {len(ids)} " + " ".join(map(str, ids)))
    ids = llm.tokenize(PROMPT.encode(), add_bos=False, special=True)
    lines.append(f"prompt {len(ids)} " + " ".join(map(str, ids)))
    llm.reset()
    llm.eval(ids)
    for pos in range(len(ids) - LAST, len(ids)):
        row = [float(x) for x in llm.scores[pos]]
        m = max(row)
        lse = m + math.log(sum(math.exp(x - m) for x in row))
        top = sorted(range(len(row)), key=lambda i: -row[i])[:TOPK]
        lines.append(f"logits {pos} {lse:.6f} {TOPK} " +
                     " ".join(f"{i} {row[i]:.6f}" for i in top))
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
