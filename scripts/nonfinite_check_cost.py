"""What the served signature's NaN/Inf row check costs (td.export_saved_model).

The exported `serving_default` sets every output of a row holding NaN or Inf to NaN
(`td.predict.finite_rows`, `td.predict.nan_rows`). This script times the same graph with
and without those ops, interleaved, for a Dirichlet student on 28x28 images
(`td.models.small_cnn`) and an MLP student, at batch sizes 1, 64 and 1024, and prints
the median latency of each and the difference.

    python scripts/nonfinite_check_cost.py [--repeats 200] [--out FILE.json]
"""

import argparse
import json
import time

import numpy as np
import tensorflow as tf

import tfp_distill as td
from tfp_distill import predict as predict_lib
from tfp_distill import uncertainty


def _graphs(student, family, spec):
  def plain(x):
    return dict(uncertainty.decompose(student(x, training=False), family))

  def checked(x):
    ok = predict_lib.finite_rows(x)
    return predict_lib.nan_rows(plain(x), ok)

  return (tf.function(plain, input_signature=[spec]),
          tf.function(checked, input_signature=[spec]))


def _median_ms(fn, x, repeats):
  fn(x)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    out = fn(x)
    for value in out.values():
      value.numpy()
    times.append(time.perf_counter() - start)
  return 1000 * float(np.median(times))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=200)
  parser.add_argument("--out", default=None)
  parser.add_argument("--fast", action="store_true", help="smoke mode (few repeats)")
  args = parser.parse_args(argv)
  repeats = 5 if args.fast else args.repeats
  family = td.families.CategoricalLogits(10)
  students = {
      "small_cnn (28x28x1)": (td.models.small_cnn(output_size=10,
                                                  head=td.heads.DirichletHead(10), seed=0),
                              (28, 28, 1)),
      "mlp (20 features)": (td.models.mlp((20,), [150], 10, head=td.heads.DirichletHead(10),
                                          seed=0), (20,)),
  }
  rows = []
  for name, (student, shape) in students.items():
    spec = tf.TensorSpec([None, *shape], tf.float32)
    plain, checked = _graphs(student, family, spec)
    for batch in (1, 64, 1024):
      x = tf.constant(np.random.default_rng(0).normal(size=(batch, *shape)), tf.float32)
      a, b = [], []
      for _ in range(3):                       # interleaved, three rounds
        a.append(_median_ms(plain, x, repeats))
        b.append(_median_ms(checked, x, repeats))
      row = {"student": name, "batch": batch, "without_ms": float(np.median(a)),
             "with_ms": float(np.median(b))}
      row["cost_ms"] = row["with_ms"] - row["without_ms"]
      row["cost_percent"] = 100 * row["cost_ms"] / row["without_ms"]
      rows.append(row)
      print(f"{name:22s} batch {batch:5d}: without {row['without_ms']:.3f} ms, with "
            f"{row['with_ms']:.3f} ms ({row['cost_percent']:+.1f}%)", flush=True)
  if args.out:
    with open(args.out, "w") as f:
      json.dump({"rows": rows, "repeats": repeats, "tensorflow": tf.__version__}, f,
                indent=2)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
