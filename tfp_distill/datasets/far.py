"""Far points: inputs moved beyond the training data's range, at chosen distances.

```none
standardised coordinates   z = (x - mean) / sd            (per feature, over the training rows)
a direction                u, a unit vector in z           (random, or a principal axis)
the data along it          p = z . u over the training rows: R = max p, s = sd of p
a far point                z' = z_b + (R + d s - z_b . u) u
                           x' = mean + sd * z'
```
The point keeps a base row's coordinates across the direction and is moved along it to
`d` standard deviations beyond the farthest training row: `d = 0` touches the edge of
the data, larger `d` leaves it. An out-of-distribution set with a known distance, for
tabular data where no second data set exists: how a model's epistemic uncertainty grows
as inputs move away from the data (and whether a student's grows as its ensemble's).
"""

import numpy as np

__all__ = ["DIRECTIONS", "far_points"]

DIRECTIONS = ("random", "principal")


def far_points(x_train, x_base, distances=(0.0, 1.0, 3.0), directions="random",
               num_principal=3, seed=0):
  """Points beyond the training rows' range along random or principal directions.

  Args:
    x_train: float array [n, features], the data the points leave.
    x_base: float array [b, features], the rows to move (e.g. test rows); each gets its
      own direction.
    distances: sequence of floats >= 0, in standard deviations of the training rows
      along the direction, beyond the farthest one.
    directions: "random" (uniform on the sphere of the standardised coordinates) or
      "principal" (the first `num_principal` principal axes of the standardised
      training rows, each with a random sign, assigned to the rows in turn).
    num_principal: int >= 1, the axes used with directions="principal".
    seed: int, for the directions and signs.

  Returns:
    dict {distance: float32 array [b, features]}.

  Raises:
    ValueError: inputs not 2-D, of different widths, with NaN/Inf, a negative distance,
      or an unknown `directions`.
  """
  x_train = np.asarray(x_train, np.float64)
  x_base = np.asarray(x_base, np.float64)
  if x_train.ndim != 2 or x_base.ndim != 2 or x_train.shape[1] != x_base.shape[1]:
    raise ValueError(f"far_points: x_train and x_base must be [n, features] of one width; "
                     f"got {list(x_train.shape)} and {list(x_base.shape)}.")
  if not (np.all(np.isfinite(x_train)) and np.all(np.isfinite(x_base))):
    raise ValueError("far_points: the inputs hold NaN or Inf.")
  if directions not in DIRECTIONS:
    raise ValueError(f"far_points: directions must be one of {DIRECTIONS}, got "
                     f"{directions!r}.")
  if any(d < 0 for d in distances):
    raise ValueError(f"far_points: distances must be >= 0, got {list(distances)}.")
  rng = np.random.default_rng(seed)
  mean = x_train.mean(0)
  sd = x_train.std(0)
  sd = np.where(sd > 0, sd, 1.0)
  z_train = (x_train - mean) / sd
  z_base = (x_base - mean) / sd
  features = x_train.shape[1]
  if directions == "random":
    u = rng.normal(size=(len(x_base), features))
  else:
    _, _, vt = np.linalg.svd(z_train - z_train.mean(0), full_matrices=False)
    axes = vt[:max(1, min(int(num_principal), len(vt)))]
    u = axes[np.arange(len(x_base)) % len(axes)]
    u = u * rng.choice([-1.0, 1.0], size=(len(x_base), 1))
  u = u / np.linalg.norm(u, axis=1, keepdims=True)
  projections = z_train @ u.T                      # [n, b]: the data along each direction
  edge = projections.max(0)                       # [b]
  spread = projections.std(0)
  spread = np.where(spread > 0, spread, 1.0)
  base = np.einsum("bf,bf->b", z_base, u)
  out = {}
  for d in distances:
    shift = edge + float(d) * spread - base       # [b]
    z_far = z_base + shift[:, None] * u
    out[float(d)] = (mean + sd * z_far).astype(np.float32)
  return out
