"""Input perturbations for distillation: Gaussian noise, ODS and ConfODS.

A perturbation is a callable `(x, teacher, seed) -> x'` that `td.teacher_targets(...,
perturbation=p)` applies to every batch inside the tf.data pipeline, and `td.Distiller(...,
perturbation=p)` inside the compiled training step; the targets are then always the
teacher's outputs on x'. `seed` is a stateless seed (int Tensor [2]) that the caller
changes every batch, so a run is reproducible.

Output-diversified sampling [1, 2] moves x one normalised gradient step in a random
direction of the output space of a randomly chosen teacher, i.e. toward inputs where the
teachers disagree:

```none
j ~ U{1..M},  w ~ U(-1, 1)^K                       (per batch: j; per example: w)
p = softmax(f_j(x) / T)
g = grad_x sum_k w_k p_k
delta = step_size * sqrt(D) * g / ||g||_2         (per example; D = input size)
ConfODS: delta *= max_k p_k                        (smaller steps where f_j is unsure)
x' = clip(x + delta, low, high)
```

For regression ensembles there is no softmax to diversify; `MeanDisagreement` (this
library's analogue, not in [1, 2]) steps up the gradient of the members' disagreement,
the variance of their means, by a random fraction of the step:

```none
v(x) = sum_d Var_m mu_m,d(x)                       (mu_m: member m's mean)
delta = u * step_size * sqrt(D) * grad_x v / ||grad_x v||_2,   u ~ U(0, 1) per example
```

#### References

[1]: Tashiro, Song, Ermon. Diversity can be Transferred: Output Diversification for
     White- and Black-box Attacks. NeurIPS 2020. arXiv:2003.06878.

[2]: Nam, Yoon, Lee, Lee. Diversity Matters When Learning From Ensembles. NeurIPS 2021.
     arXiv:2110.14149.
"""

import numpy as np
import tensorflow as tf

from tfp_distill import families as families_lib

__all__ = ["Gaussian", "ODS", "ConfODS", "MeanDisagreement", "get"]


def _seed(seed):
  seed = tf.convert_to_tensor(seed)
  if seed.shape.rank == 0:
    seed = tf.stack([tf.cast(seed, tf.int64), tf.constant(0, tf.int64)])
  return tf.cast(seed, tf.int64)


def _split(seed, n):
  """n independent stateless seeds [2] from one."""
  return tf.unstack(tf.random.experimental.stateless_split(_seed(seed), n), num=n)


def _check_range(clip):
  if clip is None:
    return None
  low, high = (float(v) for v in clip)
  if not low < high:
    raise ValueError(f"clip must be (low, high) with low < high, got {clip}.")
  return (low, high)


def _per_example(v, x):
  """v [batch] -> [batch, 1, ..., 1], broadcasting over one example of x."""
  return tf.reshape(v, [-1] + [1] * (x.shape.rank - 1))


def _step(x, g, step_size):
  """x + step_size * sqrt(D) * g / ||g||_2 per example (a zero gradient gives no step)."""
  axes = list(range(1, x.shape.rank))
  dim = tf.cast(tf.reduce_prod(tf.shape(x)[1:]), x.dtype)
  norm = tf.sqrt(tf.reduce_sum(tf.square(g), axis=axes, keepdims=True))
  return x + step_size * tf.sqrt(dim) * tf.math.divide_no_nan(g, norm)


def _clip(x, clip):
  return x if clip is None else tf.clip_by_value(x, clip[0], clip[1])


class _Perturbation:
  """Common configuration handling: `get_config` holds exactly the `__init__` arguments."""

  def get_config(self):
    raise NotImplementedError

  @classmethod
  def from_config(cls, config):
    return cls(**config)

  def __repr__(self):
    args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
    return f"{type(self).__name__}({args})"


class Gaussian(_Perturbation):
  """x' = clip(x + scale * eps), eps ~ N(0, I): the noise baseline of [2].

  Args:
    scale: float > 0, standard deviation of the noise.
    clip: None or (low, high), the valid input range (e.g. (0., 1.) for images).
  """

  def __init__(self, scale, clip=(0., 1.)):
    if not (scale > 0 and np.isfinite(scale)):
      raise ValueError(f"scale must be a finite float > 0, got {scale}.")
    self.scale = float(scale)
    self.clip = _check_range(clip)

  def __call__(self, x, teacher=None, seed=0):
    """x [batch, ...] -> x' [batch, ...] (the teacher is not used)."""
    del teacher
    x = tf.convert_to_tensor(x)
    noise = tf.random.stateless_normal(tf.shape(x), seed=_seed(seed), dtype=x.dtype)
    return _clip(x + tf.cast(self.scale, x.dtype) * noise, self.clip)

  def get_config(self):
    """The `__init__` arguments as JSON values (`from_config` rebuilds the perturbation)."""
    return {"scale": self.scale, "clip": None if self.clip is None else list(self.clip)}


class ODS(_Perturbation):
  """Output-diversified sampling: one normalised gradient step of a random teacher [1, 2].

  Args:
    step_size: float > 0, the step relative to sqrt(D) (the per-example L2 norm of the
      step is step_size * sqrt(D) before clipping).
    temperature: float > 0, T of the teacher's softmax.
    clip: None or (low, high), the valid input range.

  The teacher is a `td.Ensemble` (its `members` are used one at a time: j is drawn per
  batch and only member j runs, through `tf.switch_case`) or a single Keras model
  x -> logits [batch, K].
  """

  confidence_scaled = False

  def __init__(self, step_size, temperature=1.0, clip=(0., 1.)):
    if not (step_size > 0 and np.isfinite(step_size)):
      raise ValueError(f"step_size must be a finite float > 0, got {step_size}.")
    if not (temperature > 0 and np.isfinite(temperature)):
      raise ValueError(f"temperature must be a finite float > 0, got {temperature}.")
    self.step_size = float(step_size)
    self.temperature = float(temperature)
    self.clip = _check_range(clip)

  @staticmethod
  def members_of(teacher):
    """The list of models a teacher is drawn from."""
    members = getattr(teacher, "members", None)
    return list(members) if members is not None else [teacher]

  @staticmethod
  def member_functions_of(teacher):
    """Functions x -> logits of the teacher's members (an Ensemble's, or the model's)."""
    functions = getattr(teacher, "member_functions", None)
    if functions is not None:
      return list(functions)
    return [lambda x: teacher(x, training=False)]

  @staticmethod
  def draw(seed, batch_size, num_classes, num_members):
    """(j, w): the teacher index (int32 scalar) and directions w [batch, K] for a seed."""
    seed_j, seed_w = _split(seed, 2)
    j = tf.random.stateless_uniform([], seed=seed_j, minval=0, maxval=num_members,
                                    dtype=tf.int32)
    w = tf.random.stateless_uniform(tf.stack([batch_size, num_classes]), seed=seed_w,
                                    minval=-1., maxval=1.)
    return j, w

  def direction(self, x, teacher, seed):
    """(g, p): the gradient g [batch, ...] of sum_k w_k p_k and p [batch, K] of teacher j."""
    x = tf.convert_to_tensor(x)
    members = self.members_of(teacher)
    functions = self.member_functions_of(teacher)
    num_classes = None
    try:
      num_classes = members[0].output_shape[-1]
    except (AttributeError, RuntimeError):
      pass
    if num_classes is None:   # a subclassed model or a callable: ask it once
      num_classes = tf.compat.dimension_value(functions[0](x[:1]).shape[-1])
    j, w = self.draw(seed, tf.shape(x)[0], num_classes, len(members))
    w = tf.cast(w, x.dtype)

    def branch(member):
      def run():
        with tf.GradientTape() as tape:
          tape.watch(x)
          logits = tf.cast(member(x), x.dtype)
          p = tf.nn.softmax(logits / tf.cast(self.temperature, x.dtype), axis=-1)
          objective = tf.reduce_sum(w * p)
        return tape.gradient(objective, x), p
      return run

    if len(functions) == 1:
      return branch(functions[0])()
    return tf.switch_case(j, [branch(f) for f in functions])

  def __call__(self, x, teacher, seed=0):
    """x [batch, ...] -> x' [batch, ...], a step toward teacher disagreement."""
    x = tf.convert_to_tensor(x)
    g, p = self.direction(x, teacher, seed)
    step = tf.cast(self.step_size, x.dtype)
    if self.confidence_scaled:
      step = step * _per_example(tf.reduce_max(p, axis=-1), x)
    return _clip(_step(x, g, step), self.clip)

  def get_config(self):
    """The `__init__` arguments as JSON values (`from_config` rebuilds the perturbation)."""
    return {"step_size": self.step_size, "temperature": self.temperature,
            "clip": None if self.clip is None else list(self.clip)}


class ConfODS(ODS):
  """ODS with the step scaled by the chosen teacher's confidence max_k p_k ([2]).

  Args: as `ODS`.
  """

  confidence_scaled = True


class MeanDisagreement(_Perturbation):
  """A step toward larger disagreement of the members' means (regression analogue of ODS).

  ```none
  v(x) = sum_d Var_m mu_m,d(x)
  x' = clip(x + u * step_size * sqrt(D) * grad_x v / ||grad_x v||_2),  u ~ U(0, 1)
  ```
  u is drawn per example, so the perturbed inputs fill the segment between x and the full
  step instead of repeating one point every epoch. All M members run forward and
  backward (ODS runs one).

  Args:
    step_size: float > 0, the largest step relative to sqrt(D) (D = input size; for
      standardised inputs, step_size is about the RMS change per input dimension).
    family: the members' family (e.g. `families.HeteroscedasticNormal`): its `mean`
      picks mu from each member's params; None: the members output mu directly.
    clip: None (the default: standardised regression inputs have no range) or
      (low, high).
  """

  def __init__(self, step_size, family=None, clip=None):
    if not (step_size > 0 and np.isfinite(step_size)):
      raise ValueError(f"step_size must be a finite float > 0, got {step_size}.")
    self.step_size = float(step_size)
    self.family = None if family is None else families_lib.get(family)
    self.clip = _check_range(clip)

  def disagreement(self, x, teacher):
    """v(x) [batch]: the variance of the members' means over members, summed over dims."""
    z = teacher(x)
    if z.shape.rank != 3:
      raise ValueError(f"MeanDisagreement needs an ensemble's targets [batch, members, "
                       f"params], got shape {list(z.shape)}.")
    mu = self.family.mean(z) if self.family is not None else z
    return tf.reduce_sum(tf.math.reduce_variance(tf.cast(mu, x.dtype), axis=1), axis=-1)

  def __call__(self, x, teacher, seed=0):
    """x [batch, ...] -> x' [batch, ...], a step up the members' disagreement."""
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
      tape.watch(x)
      objective = tf.reduce_sum(self.disagreement(x, teacher))
    g = tape.gradient(objective, x)
    u = tf.random.stateless_uniform(tf.shape(x)[:1], seed=_seed(seed), dtype=x.dtype)
    return _clip(_step(x, g, tf.cast(self.step_size, x.dtype) * _per_example(u, x)),
                 self.clip)

  def get_config(self):
    """The `__init__` arguments as JSON values, the family serialized (`from_config` rebuilds
    the perturbation)."""
    return {"step_size": self.step_size,
            "family": None if self.family is None else families_lib.serialize(self.family),
            "clip": None if self.clip is None else list(self.clip)}


_CLASSES = {cls.__name__: cls for cls in (Gaussian, ODS, ConfODS, MeanDisagreement)}


def get(identifier):
  """A perturbation from an instance, None, or {"class_name", "config"}."""
  if identifier is None or isinstance(identifier, _Perturbation):
    return identifier
  if isinstance(identifier, dict) and identifier.get("class_name") in _CLASSES:
    return _CLASSES[identifier["class_name"]].from_config(identifier["config"])
  raise ValueError(f"Unknown perturbation {identifier!r}; known: {sorted(_CLASSES)}.")
