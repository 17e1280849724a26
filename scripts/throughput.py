"""Throughput of the two ways to feed a student, and of the uncertainty graphs.

Measures, on whatever device TensorFlow picks:
1. distillation examples per second with the teacher run in the tf.data pipeline
   (`student.fit(td.teacher_targets(...))`) vs inside the train step (`td.Distiller`),
   with and without its divergence guard (`on_nonfinite="ignore"`);
2. milliseconds per call of `td.decompose` (quadrature and Monte Carlo) and of
   `td.decompose_ensemble` on a batch of inputs.

Usage:
  python scripts/throughput.py                      # default sizes
  python scripts/throughput.py --hidden 256 256     # heavier members
  python scripts/throughput.py --smoke              # seconds; what the tests run
"""

import argparse
import json
import platform
import time

import numpy as np
import tensorflow as tf

import tfp_distill as td
from tfp_distill._keras import keras


def _examples_per_second(fit, examples, repeats):
  fit(1)  # trace and warm up
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    fit(1)
    best = min(best, time.perf_counter() - start)
  return examples / best


def _ms_per_call(fn, repeats):
  fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    out = fn()
    tf.nest.map_structure(lambda t: t.numpy(), out)
    times.append(time.perf_counter() - start)
  return 1e3 * float(np.median(times))


def run(args):
  family = td.families.HeteroscedasticNormal()
  head = td.heads.MultivariateNormalTriLHead
  ens = td.Ensemble([td.models.mlp((args.features,), args.hidden, family.params_size, seed=s)
                     for s in range(args.members)], family=family)

  def student():
    model = td.models.mlp((args.features,), args.student_hidden, head.params_size(2),
                          head=head(2), seed=100)
    return model

  inputs = td.targets.uniform_inputs(-np.ones(args.features), np.ones(args.features),
                                     args.samples, seed=0)
  s1 = student()
  s1.compile(keras.optimizers.Adam(1e-3), loss=td.losses.EnsembleNLL())
  stream = td.teacher_targets(inputs, ens, batch_size=args.batch_size, seed=0)
  pipeline = _examples_per_second(lambda e: s1.fit(stream, epochs=e, verbose=0),
                                  args.samples, args.repeats)

  s2 = student()
  distiller = td.Distiller(s2, ens, loss=td.losses.EnsembleNLL())
  distiller.compile(keras.optimizers.Adam(1e-3))
  plain = inputs.batch(args.batch_size).prefetch(tf.data.AUTOTUNE)
  in_step = _examples_per_second(lambda e: distiller.fit(plain, epochs=e, verbose=0),
                                 args.samples, args.repeats)
  # The same without the divergence guard (on_nonfinite="ignore"): what the guard costs.
  s3 = student()
  unguarded = td.Distiller(s3, ens, loss=td.losses.EnsembleNLL(), on_nonfinite="ignore")
  unguarded.compile(keras.optimizers.Adam(1e-3))
  in_step_unguarded = _examples_per_second(
      lambda e: unguarded.fit(plain, epochs=e, verbose=0), args.samples, args.repeats)

  x = np.random.default_rng(0).uniform(-1, 1, (args.decompose_batch, args.features))
  x = x.astype(np.float32)
  dist = s1(x)
  z = ens(x)
  decompose = {
      "student_quadrature_ms": _ms_per_call(lambda: td.decompose(dist, family),
                                            args.repeats),
      "student_monte_carlo_ms": _ms_per_call(
          lambda: td.decompose(dist, family, method="monte_carlo",
                               num_samples=args.num_samples), args.repeats),
      "ensemble_ms": _ms_per_call(lambda: td.decompose_ensemble(z, family), args.repeats),
  }
  return {
      "config": vars(args),
      "device": [d.name for d in tf.config.list_logical_devices()],
      "machine": platform.processor() or platform.machine(),
      "tensorflow": tf.__version__,
      "teacher_in_tf_data_examples_per_s": pipeline,
      "teacher_in_train_step_examples_per_s": in_step,
      "teacher_in_train_step_unguarded_examples_per_s": in_step_unguarded,
      "decompose_batch": args.decompose_batch,
      **decompose,
  }


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--members", type=int, default=10)
  parser.add_argument("--features", type=int, default=1)
  parser.add_argument("--hidden", type=int, nargs="+", default=[50])
  parser.add_argument("--student-hidden", type=int, nargs="+", default=[10, 10])
  parser.add_argument("--batch-size", type=int, default=32)
  parser.add_argument("--samples", type=int, default=10000)
  parser.add_argument("--decompose-batch", type=int, default=10000)
  parser.add_argument("--num-samples", type=int, default=100)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--json", help="also write the figures to this file")
  parser.add_argument("--smoke", action="store_true", help="tiny sizes, for the tests")
  args = parser.parse_args(argv)
  if args.smoke:
    args.members, args.samples, args.decompose_batch, args.repeats = 2, 256, 64, 1
  result = run(args)
  for key, value in result.items():
    if key != "config":
      print(f"{key:40s} {value:.1f}" if isinstance(value, float) else f"{key:40s} {value}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=2)
  return result


if __name__ == "__main__":
  main()
