"""Where ODS should run: distillation throughput with the perturbation in tf.data or in the
train step, for Fashion-MNIST-sized CNNs.

ODS needs one backward pass of a teacher member per batch on top of the M teachers'
forward passes. `td.teacher_targets(..., perturbation=ODS(...))` runs both in the tf.data
pipeline; `td.Distiller(..., perturbation=ODS(...))` runs them inside the compiled
training step (on the accelerator when there is one). This script prints examples per
second for: no perturbation, Gaussian noise and ODS, each in both places.

Usage:
  python scripts/ods_throughput.py                  # 5 members, 4096 images, batch 128
  python scripts/ods_throughput.py --smoke          # seconds; what the tests run
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
  fit()  # trace and warm up
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    fit()
    best = min(best, time.perf_counter() - start)
  return examples / best


def run(args):
  family = td.families.CategoricalLogits(10)
  teacher = td.Ensemble(
      [td.models.small_cnn(output_size=10, filters=tuple(args.filters),
                           dense_units=args.dense_units, seed=1000 * m)
       for m in range(args.members)], family=family)
  x = np.random.default_rng(0).uniform(size=(args.samples, 28, 28, 1)).astype(np.float32)
  perturbations = {"none": None, "gaussian": td.perturb.Gaussian(0.1),
                   "ods": td.perturb.ODS(step_size=0.02, temperature=4.0)}
  result = {}
  for name, perturbation in perturbations.items():
    student = td.models.small_cnn(output_size=10, head=td.heads.CategoricalHead(10),
                                  filters=tuple(args.filters),
                                  dense_units=args.dense_units, seed=7)
    student.compile(keras.optimizers.Adam(1e-3), loss=td.losses.KnowledgeDistillation(4.0))
    stream = td.teacher_targets(x, teacher, batch_size=args.batch_size,
                                perturbation=perturbation, seed=0)
    result[f"{name}_in_tf_data_examples_per_s"] = _examples_per_second(
        lambda s=student, d=stream: s.fit(d, epochs=1, verbose=0), args.samples,
        args.repeats)
    student = td.models.small_cnn(output_size=10, head=td.heads.CategoricalHead(10),
                                  filters=tuple(args.filters),
                                  dense_units=args.dense_units, seed=7)
    distiller = td.Distiller(student, teacher, loss=td.losses.KnowledgeDistillation(4.0),
                             perturbation=perturbation)
    distiller.compile(keras.optimizers.Adam(1e-3))
    plain = tf.data.Dataset.from_tensor_slices(x).batch(args.batch_size).prefetch(
        tf.data.AUTOTUNE)
    result[f"{name}_in_train_step_examples_per_s"] = _examples_per_second(
        lambda d=distiller, p=plain: d.fit(p, epochs=1, verbose=0), args.samples,
        args.repeats)
  return {"config": vars(args), "device": [d.name for d in tf.config.list_logical_devices()],
          "machine": platform.processor() or platform.machine(),
          "tensorflow": tf.__version__, **result}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--members", type=int, default=5)
  parser.add_argument("--filters", type=int, nargs="+", default=[16, 32])
  parser.add_argument("--dense-units", type=int, default=64)
  parser.add_argument("--batch-size", type=int, default=128)
  parser.add_argument("--samples", type=int, default=4096)
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--json", help="also write the figures to this file")
  parser.add_argument("--smoke", action="store_true", help="tiny sizes, for the tests")
  args = parser.parse_args(argv)
  if args.smoke:
    args.members, args.samples, args.repeats, args.filters, args.dense_units = (
        2, 64, 1, [4, 8], 8)
    args.batch_size = 32
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
