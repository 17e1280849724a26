"""Choose the image students' method on validation images, never on the test set.

Each variant (`tfp_distill.experiments.images.VARIANTS`) is a set of `ImagesConfig`
overrides applied to the EnD^2 and Gaussian-over-logits students alike. The last 5,000
training images are held out; the ensemble and the students train on the other 55,000.
The script prints and writes (`selection.md`, `selection.json`) accuracy, NLL, ECE and the
fidelity of the students' mutual information per variant, beside the ensemble and a
single member on the same images, and names the variant with the lowest validation NLL
per student. Rerunning the same command reuses finished variants.

Usage:
  python scripts/images_select.py --out reports/images_select
  python scripts/images_select.py --out reports/images_select --variants published,predictive
  python scripts/images_select.py --smoke --out /tmp/images_select   # seconds; for the tests
"""

import argparse
import os

from tfp_distill.experiments import images


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", default=os.path.join("reports", "images_select"))
  parser.add_argument("--variants", default=",".join(images.VARIANTS))
  parser.add_argument("--students", default="dirichlet,gaussian")
  parser.add_argument("--validation", type=int, default=5000,
                      help="held-out training images (default 5000)")
  parser.add_argument("--data-dir", default=None)
  parser.add_argument("--smoke", action="store_true", help="tiny run, for the tests")
  args = parser.parse_args(argv)
  config = (images.ImagesConfig.fast(data_dir=args.data_dir) if args.smoke
            else images.ImagesConfig(data_dir=args.data_dir))
  validation = 200 if args.smoke else args.validation
  try:
    result = images.select_students(
        args.out, config, variants=[v for v in args.variants.split(",") if v],
        num_validation=validation, students=[s for s in args.students.split(",") if s])
  except (ValueError, FileNotFoundError) as error:
    raise SystemExit(f"images_select: {error}") from error
  print(images.selection_markdown(result))


if __name__ == "__main__":
  main()
