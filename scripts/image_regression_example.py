"""Distil an image regressor: Keras 3 members that read the angle a picture was turned by.

What a user with an ensemble of image regressors does, on data that ships offline:

1. turn each Fashion-MNIST image by an angle drawn uniformly from [-45, 45] degrees
   (`scipy.ndimage.rotate`) and train M small CNNs with Keras 3 to read the angle back,
   each with two outputs, the mean and the log-variance of a Normal, by its negative log
   likelihood (the parameterization most users' code writes; the job reads it from the
   labelled rows, `variance="auto"`);
2. turn MNIST digits the same way: pictures none of the members saw, the OOD set;
3. run `tfp-distill distill --teacher member_*.keras --train train.npz --test test.npz
   --ood digits.npz --out DIR`.

The targets are in degrees (spread about 26), as a user's would be in their units: the
job's output normalization (`--output-normalization`, on for regression by default)
starts the student at the members' location and spread; `off` gives the student of
before 2026-12-07, whose image students started near 0 in the user's units.

Usage:
  python scripts/image_regression_example.py --out /tmp/image_regression
  python scripts/image_regression_example.py --out /tmp/image_regression --reuse-members \
      --output-normalization off --student-dir student_off
  python scripts/image_regression_example.py --smoke --out /tmp/image_regression  # seconds
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import own_ensemble_example  # noqa: E402  the members' CNN and the job's run, shared

#: the members' angles: uniform on [-MAX_ANGLE, MAX_ANGLE] degrees
MAX_ANGLE = 45.0


def rotated(x, rng):
  """(turned images [n, 28, 28, 1] float32, angles [n] float32 in degrees): each image of
  `x` [n, 28, 28, 1] in [0, 1] turned about its centre by its own uniform angle."""
  from scipy import ndimage
  angles = rng.uniform(-MAX_ANGLE, MAX_ANGLE, size=len(x)).astype(np.float32)
  out = np.empty_like(x)
  for i, (image, angle) in enumerate(zip(x, angles)):
    out[i, ..., 0] = ndimage.rotate(image[..., 0], angle, reshape=False, order=1,
                                    mode="constant", cval=0.0)
  return np.clip(out, 0.0, 1.0), angles


def _gaussian_nll(keras):
  ops = keras.ops

  def loss(y, out):
    mean, log_variance = out[:, 0], out[:, 1]
    y = ops.reshape(y, ops.shape(mean))
    return 0.5 * (log_variance + ops.square(y - mean) * ops.exp(-log_variance))
  return loss


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", default=os.path.join("reports", "image_regression"))
  parser.add_argument("--members", type=int, default=5)
  parser.add_argument("--member-epochs", type=int, default=8)
  parser.add_argument("--train-images", type=int, default=20000,
                      help="Fashion-MNIST training images turned for the members")
  parser.add_argument("--student-epochs", type=int, default=None,
                      help="student epochs (default: the schedule td.distill sets)")
  parser.add_argument("--output-normalization", choices=("auto", "on", "off"),
                      default=None, help="the job's --output-normalization (default auto)")
  parser.add_argument("--seed", type=int, default=0,
                      help="member m's seed is 100 * seed + m; the data's turns and the "
                           "job's --seed follow it")
  parser.add_argument("--student-dir", default="student")
  parser.add_argument("--reuse-members", action="store_true",
                      help="distil the member_*.keras files already in --out")
  parser.add_argument("--smoke", action="store_true", help="tiny run, for the tests")
  args = parser.parse_args(argv)

  from tfp_distill import _keras3
  from tfp_distill import cli
  from tfp_distill.datasets import images

  keras = _keras3.module()        # Keras 3, as the user's own code would import it
  os.makedirs(args.out, exist_ok=True)
  rng = np.random.default_rng(args.seed)
  (x, _), (x_test, _) = images.load_fashion_mnist()
  digits, _ = images.load_mnist_ood()
  n_train, n_test, n_ood = args.train_images, 5000, 5000
  members, member_epochs, filters, dense_units = args.members, args.member_epochs, \
      (16, 32), 64
  student_epochs = args.student_epochs
  if args.smoke:
    n_train, n_test, n_ood = 600, 200, 200
    members, member_epochs, student_epochs, filters, dense_units = 2, 1, 2, (4, 8), 16
  pick = lambda a, n: images.preprocess(a[rng.permutation(len(a))[:n]])  # noqa: E731
  x, y = rotated(pick(x, n_train), rng)
  x_test, y_test = rotated(pick(x_test, n_test), rng)
  digits, _ = rotated(pick(digits, n_ood), rng)
  np.savez(os.path.join(args.out, "train.npz"), x=x, y=y)
  np.savez(os.path.join(args.out, "test.npz"), x=x_test, y=y_test)
  np.savez(os.path.join(args.out, "digits.npz"), x=digits)

  start = time.perf_counter()
  paths = []
  for m in range(members):
    path = os.path.join(args.out, f"member_{m}.keras")
    paths.append(path)
    if args.reuse_members:
      if not os.path.exists(path):
        sys.exit(f"--reuse-members: {path} does not exist (run once without it).")
      continue
    model = own_ensemble_example._keras3_member(  # pylint: disable=protected-access
        keras, 100 * args.seed + m, filters, dense_units, outputs=2,  # mean, log-variance
        prefix="angle_member")
    model.compile(keras.optimizers.Adam(1e-3), _gaussian_nll(keras))
    model.fit(x, y, epochs=member_epochs, batch_size=128, verbose=0)
    model.save(path)
    print(f"member {m}: trained with Keras {keras.__version__} "
          f"({time.perf_counter() - start:.0f} s)", flush=True)
  members_s = time.perf_counter() - start

  student_dir = os.path.join(args.out, args.student_dir)
  argv = ["distill", "--teacher", *paths, "--train", os.path.join(args.out, "train.npz"),
          "--test", os.path.join(args.out, "test.npz"),
          "--ood", os.path.join(args.out, "digits.npz"), "--out", student_dir]
  argv += [] if student_epochs is None else ["--epochs", str(student_epochs)]
  argv += ([] if args.output_normalization is None
           else ["--output-normalization", args.output_normalization])
  argv += ["--seed", str(args.seed)] if args.seed else []
  argv += ["--quiet", "--force"] if args.smoke else []
  return own_ensemble_example.distill_and_record(cli, argv, student_dir, {
      "members_s": members_s, "members": members, "member_epochs": member_epochs,
      "train_images": n_train, "members_reused": args.reuse_members,
      "keras": keras.__version__})


if __name__ == "__main__":
  main()
