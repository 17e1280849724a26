"""Helpers shared by the studies."""

import dataclasses
import hashlib
import json

__all__ = ["config_key"]


def config_key(config, fields=()):
  """A short hash (10 hex digits) of a config dataclass's named fields (all when none)."""
  values = dataclasses.asdict(config)
  values = {k: values[k] for k in (fields or values)}
  return hashlib.sha1(json.dumps(values, sort_keys=True, default=str).encode()
                      ).hexdigest()[:10]
