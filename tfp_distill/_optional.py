"""Optional dependencies: imported where they are used, named with their extra when missing.

`pip install tfp_distill` gives the library. The packages below are needed only by the
study commands' figures, TensorBoard logs and tensorflow-datasets data, and come with
`pip install "tfp_distill[studies]"` (setup.cfg). Code that needs one imports it through
`require`, so a missing package is one line that says what to install, not a traceback
from deep inside a study:

```python
tfds = require("tensorflow_datasets", "tfds:mnist")
```
"""

import importlib

__all__ = ["MissingExtraError", "require"]

#: The extra that installs each optional module: import name -> (PyPI name, extra).
OPTIONAL = {
    "matplotlib": ("matplotlib", "studies"),
    "tensorboard": ("tensorboard", "studies"),
    "tensorflow_datasets": ("tensorflow-datasets", "studies"),
}


class MissingExtraError(ImportError):
  """An optional package is not installed; the message names the extra that installs it."""


def require(module, purpose):
  """Imports an optional module, or raises a one-line error naming its extra.

  Args:
    module: str, the import name; its top-level package must be a key of `OPTIONAL`
      ("tensorflow_datasets", "matplotlib.pyplot").
    purpose: str, what needs it, for the message ("tfds:mnist", "the report's figures").

  Returns:
    The imported module.

  Raises:
    MissingExtraError: the package is not installed.
  """
  package, extra = OPTIONAL[module.split(".")[0]]
  try:
    return importlib.import_module(module)
  except ModuleNotFoundError as e:
    if e.name is None or e.name.split(".")[0] != module.split(".")[0]:
      raise   # the package is there but something it imports is not: not ours to rename
    raise MissingExtraError(
        f"{purpose} needs {package}, which `pip install tfp_distill` leaves out: "
        f'pip install "tfp_distill[{extra}]"', name=module) from e
