"""Images: choose a student's distillation inputs on corruptions of held-out training
images (`td.experiments.image_choice`), never on MNIST or Animal-MNIST.

Scores the students saved by `scripts/own_ensemble_example.py` runs on the same members
(`--reuse-members --extra-inputs ... --student-dir ...`): each method's students are
compared on the proxy, and the job's --ood set (MNIST there) and Animal-MNIST are scored
beside (not used).

    python scripts/image_choose_inputs.py --out /tmp/own_img \
        --students student_mixup student_box student_far student_gaussian \
        student_gaussian_box --base end2=student_mixup \
        --base gaussian-logits=student_gaussian --base all=student_mixup \
        --corrupted-test 1000 --report docs/ood_inputs/images/choice

Writes REPORT/choice.json and REPORT/choice.md (REPORT defaults to OUT/choice).
"""

import argparse
import json
import os


def main(argv=None):
  import numpy as np

  from tfp_distill.datasets import images
  from tfp_distill.experiments import image_choice
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True,
                      help="the folder holding the student folders (the members and data "
                           "files are those their reports name)")
  parser.add_argument("--students", nargs="+", required=True, metavar="DIR")
  parser.add_argument("--base", action="append", default=[], metavar="METHOD=DIR",
                      help="a method's default-input student (repeatable; 'all=DIR': the "
                           "reference across methods); default: the best NLL on the proxy")
  parser.add_argument("--size", type=int, default=1000,
                      help="validation rows in the proxy (each under 7 corruptions)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--no-reported", action="store_true",
                      help="skip the job's --ood set and Animal-MNIST (the smoke test)")
  parser.add_argument("--corrupted-test", type=int, default=0, metavar="N",
                      help="also report the first N test images under every corruption "
                           "at severity 5 (the proxy's kinds among them: not independent "
                           "of the choice)")
  parser.add_argument("--rule", default=image_choice.IMAGE_RULE,
                      choices=image_choice.input_choice.RULES,
                      help="the choice rule (td.experiments.input_choice.choose; default "
                           "%(default)s, image_choice.IMAGE_RULE)")
  parser.add_argument("--report", default=None, help="where to write (default OUT/choice)")
  args = parser.parse_args(argv)
  base = {}
  for item in args.base:
    method, sep, folder = item.partition("=")
    if not sep or folder not in args.students:
      parser.error(f"--base {item!r}: expected METHOD=DIR with DIR one of --students.")
    base[method] = folder
  with open(os.path.join(args.out, args.students[0], "report.json")) as f:
    files = json.load(f)["config"]       # the job's --test and --ood files
  ood = {}
  if not args.no_reported:
    if not files.get("ood"):
      parser.error(f"{args.students[0]}: its job had no --ood file (MNIST); pass "
                   "--no-reported to score the proxy alone.")
    ood[os.path.splitext(os.path.basename(files["ood"]))[0]] = np.load(files["ood"])["x"]
    animals, _ = images.load_animal_mnist()
    ood["Animal-MNIST"] = images.preprocess(animals)
  if args.corrupted_test:
    from tfp_distill.datasets import corruptions
    x_test = np.load(files["test"])["x"][:args.corrupted_test]
    ood["corrupted test images"], _ = image_choice.corruption_proxy(
        x_test, names=tuple(corruptions.CORRUPTIONS), seed=args.seed + 1)
  result = image_choice.run_image_choice(args.out, args.students, base, args.size,
                                         args.seed, ood, rule=args.rule)
  report = args.report or os.path.join(args.out, "choice")
  os.makedirs(report, exist_ok=True)
  with open(os.path.join(report, "choice.json"), "w") as f:
    json.dump(result, f, indent=2)
  text = image_choice.format_markdown(result)
  with open(os.path.join(report, "choice.md"), "w") as f:
    f.write(text)
  print(text)
  return result


if __name__ == "__main__":
  main()
