"""Distil your own ensemble, end to end: Keras 3 members on Fashion-MNIST -> one student.

What a user with an ensemble does, on data that ships offline:

1. train M small CNNs with Keras 3 (`import keras`, the TensorFlow backend), as a user
   would in their own code, and save each as a `.keras` file;
2. write the training and test images (and MNIST digits as out-of-distribution inputs)
   as `.npz` files with arrays `x` (and `y`);
3. run `tfp-distill distill --teacher member_*.keras --train train.npz --test test.npz
   --ood mnist.npz --out DIR`, which writes the student and its report.

Usage:
  python scripts/own_ensemble_example.py --out reports/own_ensemble
  python scripts/own_ensemble_example.py --smoke --out /tmp/own_ensemble   # seconds
  python scripts/own_ensemble_example.py --out reports/own_ensemble --reuse-members \
      --extra-inputs mixup+box:0.5 --student-dir student_box   # the same members
  python scripts/own_ensemble_example.py --out reports/own_ensemble --reuse-members \
      --method gaussian-logits --student-dir student_gaussian --ceiling

`--rescore DIR ...` trains nothing: it scores the students that earlier runs saved under
--out (their `student.keras`) against the members on the digits, the OOD fidelity the
report of a newer job gives itself (`report["ood"]["fidelity"]`), and writes
rescore.json in --out.

`--ceiling` also trains a second ensemble (other seeds, `ceiling_member_*.keras`; with
`--reuse-members`, the one an earlier run saved is used) and writes, beside the
student's report, the Spearman correlation of the two ensembles' mutual information on
the test images and on the digits: the noise ceiling of the student's fidelity there
(`report["fidelity"]`, `report["ood"]["fidelity"]`).
"""

import argparse
import json
import os
import sys
import time

import numpy as np


def _mutual_information(td, keras, paths, xs):
  """The mutual information [n] at each x of `xs` of the ensemble of the `.keras` files
  `paths` (loaded once)."""
  family = td.families.CategoricalLogits(10)
  teacher = td.Ensemble([keras.models.load_model(p) for p in paths], family=family)
  return [np.asarray(td.predict_uncertainty(teacher, family, x)["epistemic"]) for x in xs]


def _ceiling(keras, paths, second_paths, x_test, mnist):
  """Spearman correlation of two ensembles' mutual information on the test images and
  on the digits: how well one ensemble's epistemic ranking predicts another's."""
  from scipy import stats

  import tfp_distill as td
  first = _mutual_information(td, keras, paths, (x_test, mnist))
  second = _mutual_information(td, keras, second_paths, (x_test, mnist))
  return {part: float(stats.spearmanr(a, b)[0])
          for part, a, b in zip(("test", "ood"), first, second)}


def _rescore(out, folders):
  """{folder: {spearman, mean_ratio}}: each saved student's mutual information on the
  digits (out/mnist.npz) against the members' (out/member_*.keras)."""
  import glob

  from scipy import stats

  import tfp_distill as td
  import tfp_distill.keras3  # noqa: F401  registers the heads and losses with Keras
  from tfp_distill import _keras3
  keras = _keras3.module()
  digits = np.load(os.path.join(out, "mnist.npz"))["x"]
  paths = sorted(glob.glob(os.path.join(out, "member_*.keras")))
  (ensemble,) = _mutual_information(td, keras, paths, (digits,))
  scores = {}
  for folder in folders:
    with open(os.path.join(out, folder, "report.json")) as f:
      student_family = td.families.get(json.load(f)["student_family"])
    student = keras.models.load_model(os.path.join(out, folder, "student.keras"))
    mi = np.asarray(td.predict_uncertainty(student, student_family, digits)["epistemic"])
    scores[folder] = {"spearman": float(stats.spearmanr(mi, ensemble)[0]),
                      "mean_ratio": float(mi.mean() / ensemble.mean())}
    print(f"{folder}: Spearman {scores[folder]['spearman']:.3f}, mean ratio "
          f"{scores[folder]['mean_ratio']:.3f} on the digits", flush=True)
  with open(os.path.join(out, "rescore.json"), "w") as f:
    json.dump(scores, f, indent=2)
  return scores


def _keras3_member(keras, seed, filters, dense_units, outputs=10, prefix="member"):
  """A small Keras 3 CNN of 28 x 28 x 1 images, as a user would write it: `outputs`
  linear outputs (10 logits here; a regressor's mean and log-variance elsewhere)."""
  keras.utils.set_random_seed(seed)
  return keras.Sequential([
      keras.Input((28, 28, 1)),
      keras.layers.Conv2D(filters[0], 3, activation="relu"),
      keras.layers.MaxPooling2D(),
      keras.layers.Conv2D(filters[1], 3, activation="relu"),
      keras.layers.MaxPooling2D(),
      keras.layers.Flatten(),
      keras.layers.Dense(dense_units, activation="relu"),
      keras.layers.Dense(outputs),
  ], name=f"{prefix}_{seed}")


def distill_and_record(cli, argv, student_dir, example):
  """Runs `tfp-distill` with `argv` (its --out is `student_dir`), adds the dict `example`
  (with `members_s`) and the job's time to its report.json; returns the report (exits
  with the job's status when it failed)."""
  start = time.perf_counter()
  print("tfp-distill " + " ".join(argv), flush=True)
  status = cli.main(argv)
  distill_s = time.perf_counter() - start
  with open(os.path.join(student_dir, "report.json")) as f:
    report = json.load(f)
  report["example"] = dict(example, distill_s=distill_s)
  with open(os.path.join(student_dir, "report.json"), "w") as f:
    json.dump(report, f, indent=2, default=float)
  print(f"members {example['members_s']:.0f} s, tfp-distill distill {distill_s:.0f} s")
  return report if status == 0 else sys.exit(status)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", default=os.path.join("reports", "own_ensemble"))
  parser.add_argument("--members", type=int, default=5)
  parser.add_argument("--member-epochs", type=int, default=5)
  parser.add_argument("--student-epochs", type=int, default=None,
                      help="student epochs (default: the schedule td.distill sets from "
                           "the data)")
  parser.add_argument("--keras", choices=("2", "3"), default=None,
                      help="the student's Keras (default: the command's, Keras 3)")
  parser.add_argument("--extra-inputs", default=None,
                      help="the job's --extra-inputs (default: the method's, mixup)")
  parser.add_argument("--seed", type=int, default=0,
                      help="another ensemble and student: member m's seed is 100 * seed + "
                           "m (the second ensemble's 1000 more), and the job's --seed")
  parser.add_argument("--temperature", default=None,
                      help="the job's --temperature (EnD^2's starting temperature, or "
                           "'choose'; default the job's: 1 for these image inputs)")
  parser.add_argument("--output-normalization", choices=("auto", "on", "off"),
                      default=None, help="the job's --output-normalization (default auto)")
  parser.add_argument("--method", default=None,
                      help="the job's --method (default: end2, the EnD^2 student)")
  parser.add_argument("--ceiling", action="store_true",
                      help="a second ensemble of other seeds: its agreement with the "
                           "first on the test images and the digits (the noise ceiling)")
  parser.add_argument("--student-dir", default="student",
                      help="the student's folder, under --out")
  parser.add_argument("--reuse-members", action="store_true",
                      help="distil the member_*.keras files already in --out (trained "
                           "by an earlier run with the same settings) instead of "
                           "training new ones")
  parser.add_argument("--rescore", nargs="+", metavar="DIR",
                      help="score the saved students in these folders under --out on the "
                           "digits (Spearman and mean ratio to the members' mutual "
                           "information); trains nothing")
  parser.add_argument("--smoke", action="store_true", help="tiny run, for the tests")
  args = parser.parse_args(argv)
  if args.rescore:
    return _rescore(args.out, args.rescore)
  from tfp_distill import _keras3
  from tfp_distill import cli
  from tfp_distill.datasets import images

  keras = _keras3.module()        # Keras 3, as the user's own code would import it
  os.makedirs(args.out, exist_ok=True)
  (x, y), (x_test, y_test) = images.load_fashion_mnist()
  x, x_test = images.preprocess(x), images.preprocess(x_test)
  mnist, _ = images.load_mnist_ood()
  mnist = images.preprocess(mnist)
  members, member_epochs, student_epochs = args.members, args.member_epochs, \
      args.student_epochs
  filters, dense_units = (16, 32), 64
  if args.smoke:
    x, y, x_test, y_test, mnist = x[:600], y[:600], x_test[:200], y_test[:200], mnist[:200]
    members, member_epochs, student_epochs, filters, dense_units = 2, 1, 2, (4, 8), 16
    # Members trained for one epoch on 600 images are near chance: the job would stop
    # at its sanity check, so the smoke run says --force.
  np.savez(os.path.join(args.out, "train.npz"), x=x, y=y.astype(np.int64))
  np.savez(os.path.join(args.out, "test.npz"), x=x_test, y=y_test.astype(np.int64))
  np.savez(os.path.join(args.out, "mnist.npz"), x=mnist)

  start = time.perf_counter()

  def ensemble(prefix, seed_offset, reuse):
    paths = []
    for m in range(members):
      path = os.path.join(args.out, f"{prefix}_{m}.keras")
      paths.append(path)
      if reuse:
        if not os.path.exists(path):
          sys.exit(f"--reuse-members: {path} does not exist (run once without it).")
        continue
      model = _keras3_member(keras, seed_offset + m, filters, dense_units)
      model.compile(keras.optimizers.Adam(1e-3),
                    keras.losses.SparseCategoricalCrossentropy(from_logits=True))
      model.fit(x, y, epochs=member_epochs, batch_size=128, verbose=0)
      model.save(path)
      print(f"{prefix} {m}: trained with Keras {keras.__version__} "
            f"({time.perf_counter() - start:.0f} s)", flush=True)
    return paths

  paths = ensemble("member", 100 * args.seed, args.reuse_members)
  members_s = time.perf_counter() - start
  ceiling = None
  if args.ceiling:
    # With --reuse-members, a second ensemble an earlier run left is reused too.
    second = os.path.join(args.out, f"ceiling_member_{members - 1}.keras")
    reuse = args.reuse_members and os.path.exists(second)
    ceiling = _ceiling(keras, paths, ensemble("ceiling_member", 1000 + 100 * args.seed, reuse),
                       x_test, mnist)

  student_dir = os.path.join(args.out, args.student_dir)
  argv = ["distill", "--teacher", *paths, "--train", os.path.join(args.out, "train.npz"),
          "--test", os.path.join(args.out, "test.npz"),
          "--ood", os.path.join(args.out, "mnist.npz"), "--out", student_dir]
  argv += [] if student_epochs is None else ["--epochs", str(student_epochs)]
  argv += [] if args.keras is None else ["--keras", args.keras]
  argv += [] if args.extra_inputs is None else ["--extra-inputs", args.extra_inputs]
  argv += ([] if args.output_normalization is None
           else ["--output-normalization", args.output_normalization])
  argv += [] if args.method is None else ["--method", args.method]
  argv += [] if args.temperature is None else ["--temperature", args.temperature]
  argv += ["--seed", str(args.seed)] if args.seed else []
  argv += ["--quiet", "--force"] if args.smoke else []
  return distill_and_record(cli, argv, student_dir, {
      "members_s": members_s, "members": members, "member_epochs": member_epochs,
      "members_reused": args.reuse_members, "keras": keras.__version__,
      "ceiling": ceiling})


if __name__ == "__main__":
  main()
