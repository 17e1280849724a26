"""`python -m tfp_distill ...` runs the `tfp-distill` command line."""

import sys

from tfp_distill.cli import main

if __name__ == "__main__":
  sys.exit(main())
