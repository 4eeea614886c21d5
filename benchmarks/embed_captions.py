"""Caption embedding throughput: every caption padded to ``max_len`` (as before) against
captions in order of length, each batch cut to its longest (``TextEncoder.embed``).

  python benchmarks/embed_captions.py [runs/text_encoder] [num_captions] [rounds]

The text-conditional GANs embed every training caption once when a run starts or
resumes (50,000 for the default 10,000 faces x 5). Both ways run in one process,
interleaved; prints captions per second per round and their ratio, and the largest
difference between the two embeddings.
"""

import sys
import time

import numpy as np

from zoo.data.faces import captioned
from zoo.tasks import text_encoder as text_task


def padded_to_max_len(enc, captions, batch=256):
  out = []
  for lo in range(0, len(captions), batch):
    tok, ln = enc.vocab.encode(captions[lo : lo + batch], enc.max_len)
    e = text_task._apply_encoder(enc.module, enc.params, tok, ln)  # pylint: disable=protected-access
    out.append(np.asarray(text_task._maybe_unit(e, enc.normalize)))  # pylint: disable=protected-access
  return np.concatenate(out)


def main(argv):
  workdir = argv[1] if len(argv) > 1 else "runs/text_encoder"
  n = int(argv[2]) if len(argv) > 2 else 10_000
  rounds = int(argv[3]) if len(argv) > 3 else 3
  enc = text_task.load_text_encoder(workdir)
  src = captioned.CaptionedFaces("train", (32, 32), num_faces=-(-n // 5), captions_per_face=5)
  caps = [src.caption(i)[0] for i in range(n)]
  lens = np.array([len(t) for t in caps])
  print(f"{n} captions, length mean {lens.mean():.0f}, max {lens.max()}; max_len {enc.max_len}")
  a, b = padded_to_max_len(enc, caps[:512]), enc.embed(caps[:512])  # compile both
  print(f"largest difference: {np.abs(a - b).max():.2e}")
  for r in range(rounds):
    t0 = time.perf_counter()
    padded_to_max_len(enc, caps)
    t1 = time.perf_counter()
    enc.embed(caps)
    t2 = time.perf_counter()
    print(
      f"round {r}: padded {n / (t1 - t0):.0f}/s, by length {n / (t2 - t1):.0f}/s, "
      f"ratio {(t1 - t0) / (t2 - t1):.2f}"
    )


if __name__ == "__main__":
  main(sys.argv)
