"""The one registry of distillation methods: a name -> head, loss, family, inputs, schedule.

```none
name (+ aliases)        task            student head             loss                 epistemic
end2 (dirichlet)        classification  DirichletHead(K)         DirichletNLL, T 2.5->1   yes
proxy-dirichlet (proxy) classification  DirichletHead(K)         DirichletNLL(proxy)      yes
gaussian-logits         classification  MVN over K-1 logits      EnsembleNLL (centred)    yes
  (gaussian)
gaussian-logits-diagonal classification Normal over K-1 logits   EnsembleNLL (centred)    yes
kd                      classification  CategoricalHead(K)       KnowledgeDistillation T 2  no
mixture                 classification  CategoricalHead(K)       MixtureKL                no
mvn (full, gaussian)    regression      MVN over z = [mu, rho]   EnsembleNLL              yes
diagonal                regression      Normal over z            EnsembleNLL              yes
mixture                 regression      Normal over y            MixtureKL                no
```

`td.distill`, `tfp-distill distill` and the studies read this table: a method is named
once. Old names (the studies' "dirichlet", "gaussian", "full", ...) are aliases that
resolve to the same entry.

#### Examples

```python
method = td.methods.get("end2", task="classification")
head, params_size = method.head(family)
loss = method.loss(family)
u_family = method.decomposition_family(family)   # what td.decompose takes
```

#### References

[1]: Malinin, Mlodozeniec, Gales. Ensemble Distribution Distillation. ICLR 2020.
     arXiv:1905.00076.
[2]: Lindqvist, Olmin, Lindsten, Svensson. A general framework for ensemble distribution
     distillation. 2020. arXiv:2002.11531.
[3]: Ryabinin, Malinin, Gales. Scaling Ensemble Distribution Distillation to Many
     Classes with Proxy Targets. NeurIPS 2021. arXiv:2105.06987.
[4]: Hinton, Vinyals, Dean. Distilling the Knowledge in a Neural Network. 2015.
     arXiv:1503.02531.
"""

import dataclasses

from tfp_distill import families as families_lib
from tfp_distill import heads as heads_lib
from tfp_distill import losses as losses_lib

__all__ = ["Method", "TASKS", "get", "names", "register", "registry"]

TASKS = ("classification", "regression")


@dataclasses.dataclass(frozen=True)
class Method:
  """One distillation method: what the student is and how it learns.

  Attributes:
    name: str, the method's one name.
    task: "classification" or "regression".
    aliases: tuple of str, older names that resolve to this method.
    summary: str, one line for reports and `--help`.
    make_head: callable(family, heads=td.heads) -> (head layer, params_size); `heads`
      is `td.heads` or `td.keras3.heads`.
    make_loss: callable(family, temperature, losses=td.losses) -> Keras loss; `losses`
      is `td.losses` or `td.keras3.losses`.
    make_decomposition_family: callable(family) -> the family `td.decompose` takes for
      this student (e.g. the reference-class family for a Gaussian over logits).
    epistemic: bool, whether the student has an epistemic part (a distribution over the
      members' outputs) or only the ensemble's predictive (mixture, KD).
    extra_inputs: str, the default distillation inputs beyond the training rows
      ("mixup" or "jitter").
    temperature: None, or (initial, final): the loss's temperature, annealed from
      `initial` (constant for the first quarter of the epochs) to `final` (reached at
      three quarters) by `td.callbacks.TemperatureAnnealing`.
    paper: str, where the method comes from.
  """

  name: str
  task: str
  aliases: tuple
  summary: str
  make_head: object
  make_loss: object
  make_decomposition_family: object
  epistemic: bool
  extra_inputs: str
  temperature: tuple | None = None
  paper: str = ""

  def head(self, family, keras_version=2):
    """(head layer, params_size) of the student's distribution head: a `td.heads` layer
    (keras_version 2, tf_keras) or a `td.keras3.heads` one (3)."""
    if keras_version == 2:
      return self.make_head(family)
    return self.make_head(family, heads=_modules(keras_version)[0])

  def loss(self, family, temperature=None, keras_version=2):
    """The Keras loss (`td.losses`, or `td.keras3.losses` for keras_version 3);
    `temperature` defaults to the schedule's initial value."""
    if temperature is None and self.temperature is not None:
      temperature = self.temperature[0]
    if keras_version == 2:
      return self.make_loss(family, temperature)
    return self.make_loss(family, temperature, losses=_modules(keras_version)[1])

  def decomposition_family(self, family):
    """The family `td.decompose` / `td.predict_uncertainty` take for this student."""
    return self.make_decomposition_family(family)

  def annealing(self, epochs, initial=None):
    """None, or (initial, final, start_epoch, end_epoch) of the temperature schedule
    over `epochs` epochs: constant for the first quarter, linear to `final` by three
    quarters ([1], sec. 4 anneals the same way). `initial`: None (the method's) or the
    starting temperature to use instead."""
    if self.temperature is None:
      return None
    start, end = epochs // 4, (3 * epochs) // 4
    first = self.temperature[0] if initial is None else float(initial)
    return (first, self.temperature[1], start, max(end, start + 1))


_REGISTRY = {}


def _modules(keras_version):
  """(heads, losses) modules of a Keras: 2 (tf_keras) or 3 (Keras 3, TensorFlow backend)."""
  if keras_version == 3:
    from tfp_distill.keras3 import heads, losses
    return heads, losses
  if keras_version == 2:
    return heads_lib, losses_lib
  raise ValueError(f"keras_version must be 2 (tf_keras) or 3 (Keras 3), got "
                   f"{keras_version!r}.")


def register(method):
  """Adds a method (its name and aliases must be new for its task); returns it."""
  if method.task not in TASKS:
    raise ValueError(f"task must be one of {TASKS}, got {method.task!r}.")
  for key in (method.name,) + tuple(method.aliases):
    if (method.task, key) in _REGISTRY:
      raise ValueError(f"A {method.task} method is already registered as {key!r}.")
  for key in (method.name,) + tuple(method.aliases):
    _REGISTRY[(method.task, key)] = method
  return method


def names(task):
  """The methods' names for a task, the default first."""
  if task not in TASKS:
    raise ValueError(f"task must be one of {TASKS}, got {task!r}.")
  seen = []
  for (t, _), method in _REGISTRY.items():
    if t == task and method.name not in seen:
      seen.append(method.name)
  return tuple(seen)


def registry():
  """{(task, name): Method} of the methods (aliases not repeated)."""
  return {(m.task, m.name): m for m in _REGISTRY.values()}


def get(name, task):
  """The method called `name` (or an alias of it) for `task`.

  Args:
    name: str, e.g. "end2", "gaussian-logits", "mvn"; None or "auto": the task's default.
    task: "classification" or "regression".

  Raises:
    ValueError: no such method for this task (the message lists the task's methods, and
      says when the name is a method of the other task).
  """
  if task not in TASKS:
    raise ValueError(f"task must be one of {TASKS}, got {task!r}.")
  if name in (None, "auto"):
    return _REGISTRY[(task, names(task)[0])]
  key = str(name).strip().lower().replace("_", "-")
  if (task, key) in _REGISTRY:
    return _REGISTRY[(task, key)]
  other = [t for t in TASKS if t != task and (t, key) in _REGISTRY]
  hint = f" ({name} is a {other[0]} method)" if other else ""
  raise ValueError(f"{name} is not a {task} method{hint}; {task} methods: "
                   f"{', '.join(names(task))}.")


# ---------------------------------------------------------------------------------------
# The methods. Classification families are `CategoricalLogits` (members give logits).


def _centred(family):
  return families_lib.CategoricalLogits(family.num_classes, reference_class=True)


def _same(family):
  return family


def _dirichlet_head(family, heads=heads_lib):
  return heads.DirichletHead(family.num_classes), family.num_classes


def _categorical_head(family, heads=heads_lib):
  return heads.CategoricalHead(family.num_classes), family.num_classes


def _normal_class(heads, full):
  return heads.MultivariateNormalTriLHead if full else heads.NormalHead


def _logit_normal_head(full):

  def make(family, heads=heads_lib):
    cls, size = _normal_class(heads, full), family.num_classes - 1
    return cls(size), cls.params_size(size)
  return make


def _z_normal_head(full):

  def make(family, heads=heads_lib):
    cls = _normal_class(heads, full)
    return cls(family.params_size), cls.params_size(family.params_size)
  return make


def _predictive_normal_head(family, heads=heads_lib):
  head = heads.NormalPredictiveHead(family.event_size, min_scale=family.min_variance)
  return head, heads.NormalPredictiveHead.params_size(family.event_size)


register(Method(
    name="end2", task="classification", aliases=("dirichlet", "end^2", "end-2"),
    summary="EnD^2: a Dirichlet over the members' probability vectors",
    make_head=_dirichlet_head,
    make_loss=lambda family, t, losses=losses_lib: losses.DirichletNLL(
        temperature=t, smoothing=1e-4, family=family),
    make_decomposition_family=_same, epistemic=True, extra_inputs="mixup",
    temperature=(2.5, 1.0), paper="Malinin et al. 2020, arXiv:1905.00076"))
register(Method(
    name="gaussian-logits", task="classification",
    aliases=("gaussian", "gaussian-over-logits", "logit-normal"),
    summary="a full-covariance Normal over the members' K-1 centred logits",
    make_head=_logit_normal_head(full=True),
    make_loss=lambda family, t, losses=losses_lib: losses.EnsembleNLL(_centred(family)),
    make_decomposition_family=_centred, epistemic=True, extra_inputs="mixup",
    paper="Lindqvist et al. 2020, arXiv:2002.11531"))
register(Method(
    name="gaussian-logits-diagonal", task="classification",
    aliases=("gaussian-diagonal",),
    summary="a diagonal Normal over the members' K-1 centred logits (the paper's choice)",
    make_head=_logit_normal_head(full=False),
    make_loss=lambda family, t, losses=losses_lib: losses.EnsembleNLL(_centred(family)),
    make_decomposition_family=_centred, epistemic=True, extra_inputs="mixup",
    paper="Lindqvist et al. 2020, arXiv:2002.11531"))
register(Method(
    name="proxy-dirichlet", task="classification", aliases=("proxy",),
    summary="a Dirichlet fitted to the proxy-Dirichlet target (for many classes)",
    make_head=_dirichlet_head,
    make_loss=lambda family, t, losses=losses_lib: losses.DirichletNLL(
        temperature=1.0 if t is None else t, family=family, target="proxy"),
    make_decomposition_family=_same, epistemic=True, extra_inputs="mixup",
    paper="Ryabinin et al. 2021, arXiv:2105.06987"))
register(Method(
    name="kd", task="classification", aliases=("knowledge-distillation",),
    summary="knowledge distillation: one Categorical, the ensemble's mean at T = 2",
    make_head=_categorical_head,
    make_loss=lambda family, t, losses=losses_lib: losses.KnowledgeDistillation(
        temperature=2.0 if t is None else t, family=family),
    make_decomposition_family=_same, epistemic=False, extra_inputs="mixup",
    paper="Hinton et al. 2015, arXiv:1503.02531"))
register(Method(
    name="mixture", task="classification", aliases=("mixture-kl", "soft-targets"),
    summary="mixture distillation: one Categorical fitted to the ensemble's mean",
    make_head=_categorical_head,
    make_loss=lambda family, t, losses=losses_lib: losses.MixtureKL(family),
    make_decomposition_family=_same, epistemic=False, extra_inputs="mixup",
    paper="Lindqvist et al. 2020, eq 5"))
register(Method(
    name="mvn", task="regression", aliases=("full", "full-covariance", "gaussian"),
    summary="a full-covariance Normal over the members' z = [mu, rho]",
    make_head=_z_normal_head(full=True),
    make_loss=lambda family, t, losses=losses_lib: losses.EnsembleNLL(),
    make_decomposition_family=_same, epistemic=True, extra_inputs="jitter",
    paper="Lindqvist et al. 2020, arXiv:2002.11531"))
register(Method(
    name="diagonal", task="regression", aliases=("diag", "independent-normal"),
    summary="a diagonal Normal over the members' z = [mu, rho]",
    make_head=_z_normal_head(full=False),
    make_loss=lambda family, t, losses=losses_lib: losses.EnsembleNLL(),
    make_decomposition_family=_same, epistemic=True, extra_inputs="jitter",
    paper="Lindqvist et al. 2020, arXiv:2002.11531"))
register(Method(
    name="mixture", task="regression", aliases=("mixture-kl",),
    summary="mixture distillation: one Normal over y fitted to the ensemble's mixture",
    make_head=_predictive_normal_head,
    make_loss=lambda family, t, losses=losses_lib: losses.MixtureKL(family),
    make_decomposition_family=_same, epistemic=False, extra_inputs="jitter",
    paper="Lindqvist et al. 2020, eq 31"))
