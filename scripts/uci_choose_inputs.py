"""UCI PCA hold-out: choose the students' inputs per set and split on a proxy of the
training rows (`td.experiments.uci_choice`), never on the held-out rows.

For each split of `tfp-distill uci --ood`, both ends of the training rows' first
principal component are held out as a proxy OOD set, a proxy ensemble is trained on the
rest, and the full student is distilled from it with each candidate's inputs (box 0.2,
marginal 2, far 4 at 0.25-1.5 sd: `uci_choice.INPUT_MIXES`); the rule of
`td.experiments.input_choice.choose` picks one. The measurement is then the run of each
chosen mix, put together split by split with `scripts/uci_ood_inputs.py --choice`.

    python scripts/uci_choose_inputs.py --out reports/uci_ood/choice [--datasets yacht energy]
        [--splits 5] [--candidates box marginal far] [--share 0.1] [--fast]

Writes OUT/choice.md and OUT/choice.json (and one file per split, read back on a rerun).
"""

import argparse


def main(argv=None):
  from tfp_distill.datasets import uci as uci_data
  from tfp_distill.experiments import input_choice
  from tfp_distill.experiments import uci
  from tfp_distill.experiments import uci_choice
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True)
  parser.add_argument("--datasets", nargs="+", default=list(uci_data.UCI_DATASETS),
                      choices=list(uci_data.UCI_DATASETS))
  parser.add_argument("--splits", type=int, default=5)
  parser.add_argument("--candidates", nargs="+", default=list(uci_choice.CANDIDATES),
                      choices=list(uci_choice.INPUT_MIXES))
  parser.add_argument("--share", type=float, default=0.1,
                      help="share of the training rows held out as the proxy OOD set")
  parser.add_argument("--rule", default=input_choice.DEFAULT_RULE, choices=input_choice.RULES)
  parser.add_argument("--data-dir", default=None)
  parser.add_argument("--fast", action="store_true", help="tiny settings (smoke test)")
  args = parser.parse_args(argv)
  config = uci.UCIConfig.fast() if args.fast else uci.UCIConfig()
  mixes = uci_choice.INPUT_MIXES
  if args.fast:    # the mixes without their 12,000-step floor
    mixes = {name: {k: v for k, v in mix.items() if k != "student_min_steps"}
             for name, mix in mixes.items()}
  report = uci_choice.run_choice(args.out, args.datasets, args.splits, args.candidates,
                                 config, args.data_dir, args.share, args.rule, mixes)
  print(uci_choice.format_markdown(report))
  return report


if __name__ == "__main__":
  main()
