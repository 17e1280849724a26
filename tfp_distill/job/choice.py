"""The EnD^2 loss's starting temperature in a job: the default of image inputs, and
`temperature="choose"`, chosen per job on a proxy built from the training images alone.

With image inputs and no `temperature`, an annealed method starts at `IMAGE_TEMPERATURE`
(1) instead of its own default (end2: 2.5): decided by a test fixed before its run
(docs/studies/ood-inputs.md, own ensemble seed 3), after 1 came nearer the ensemble on
MNIST and Animal-MNIST together on the four ensembles and recipes before it.

A student is trained at each of `CHOICE_TEMPERATURES`; each is scored against the
ensemble on the job's early-stopping rows (never fitted by a student) and on the same
images under the corruptions of `tfp_distill.experiments.image_choice` at severity 5;
`choose` keeps one (`RULE`: the best AUROC gap there, the default on a near tie):

```none
validation rows ─► up to PROXY_ROWS ─► proxy test ─┐
                   └► corrupted (7 kinds, sev. 5) ─┴─► ensemble MI, each student's MI
                                                       ─► input_choice.proxy_score
labels (or the ensemble's predictions) ─► NLL gap  ─► admissible ─► choose
```

Its record (docs/studies/ood-inputs.md): with the images' fidelity rule, right on the two
own ensembles it was first run on; wrong on the next two, seed 2 in the job (a test fixed
before its run) and seed 3 by the same proxy and rule (`scripts/image_choose_inputs.py`):
it kept 2.5, whose proxy size was just inside 1.5x, where 1 was nearer the ensemble on
MNIST and Animal-MNIST. The proxy-AUROC rule (`RULE`) passed a test fixed before seeds 4
and 5 (it kept 1 on both, which was nearer there; so did the fidelity rule).
The proxy needs no retraining of members, only a second student. Tabular rows have no
such proxy without members that did not see the held-out rows, so they are refused.
"""

import numpy as np

from tfp_distill import metrics as metrics_lib
from tfp_distill import predict as predict_lib
from tfp_distill import uncertainty as uncertainty_lib
from tfp_distill.experiments import image_choice
from tfp_distill.experiments import input_choice
from tfp_distill.job.config import DistillError

__all__ = ["AUROC_TIE", "CHOICE_TEMPERATURES", "IMAGE_TEMPERATURE", "PROXY_CORRUPTIONS",
           "PROXY_ROWS", "PROXY_SEVERITY", "RULE", "RULE_WORDS", "candidates",
           "check_choosable", "choose", "default_temperature", "ensemble_view", "nll_gap",
           "proxy_images", "proxy_rows", "score_student", "tag"]

#: The starting temperatures `temperature="choose"` tries: 1 and the method's default.
CHOICE_TEMPERATURES = (1.0, 2.5)
#: The rule that keeps a candidate, by the test of seeds 4-5 (docs/studies/ood-inputs.md):
#: the highest proxy AUROC gap among the candidates within the NLL guard; within
#: `AUROC_TIE` of the default's, the default. (Before: the images' fidelity rule,
#: `image_choice.IMAGE_RULE`, which kept 2.5 on seeds 2 and 3 by its proxy size.)
RULE = "proxy-auroc"
AUROC_TIE = 0.005
#: The rule in words, for the log.
RULE_WORDS = (f"the highest AUROC gap on the corrupted images (within {AUROC_TIE:g} of "
              "the default's: the default), among students within "
              f"{input_choice.IN_DISTRIBUTION_SLACK['nll_gap']:g} nats of the default's NLL")
#: The proxy's corruptions and their severity: the images study's.
PROXY_CORRUPTIONS, PROXY_SEVERITY = (image_choice.PROXY_CORRUPTIONS,
                                     image_choice.PROXY_SEVERITY)
#: The starting temperature of an annealed method's students of image inputs when the
#: job is given none (the method's own default, end2's 2.5, for other inputs).
IMAGE_TEMPERATURE = 1.0
#: Validation rows in the proxy (each also under every proxy corruption).
PROXY_ROWS = 1000


def candidates(config):
  """The starting temperatures a job trains: `CHOICE_TEMPERATURES` for "choose", else
  None (one student at `config.temperature`)."""
  return CHOICE_TEMPERATURES if config.temperature == "choose" else None


def default_temperature(method, x):
  """(the starting temperature, why) of a job given no `temperature`:
  (`IMAGE_TEMPERATURE`, "the default for image inputs") for an annealed method and
  images [n, h, w, c]; (None, "") (the method's own) otherwise."""
  if method.temperature is not None and np.ndim(x) == 4:
    return IMAGE_TEMPERATURE, "the default for image inputs"
  return None, ""


def tag(temperature):
  """The suffix of a candidate's backup and logs in the job folder ("_t2.5")."""
  return f"_t{temperature:g}"


def check_choosable(task, x, teacher_models):
  """Refuses "choose" in one line where the proxy cannot be built.

  Args:
    task: "classification", "regression", or None (not known yet: the job checks the
      inputs once loaded, before reading the members' outputs, and the task later).
    x: the training inputs [n, ...].
    teacher_models: bool, whether the teacher is models (not precomputed outputs).
  """
  if task not in (None, "classification"):
    raise DistillError("temperature='choose' is for classification (EnD^2); the task is "
                       f"{task}.")
  if np.ndim(x) != 4:
    raise DistillError("temperature='choose' scores its candidates on corrupted held-out "
                       "training images; these inputs are not images [n, h, w, c] (shape "
                       f"{list(np.shape(x))}): set a number, e.g. temperature=1.")
  if not teacher_models:
    raise DistillError("temperature='choose' runs the members on corrupted images: it "
                       "needs teacher models, not precomputed outputs; set a number.")


def _pixel_scale(x, pixel_scale):
  """(255 or 1, how it was decided): the values the images are in."""
  if pixel_scale in (1, 255):
    return pixel_scale, "the job's image scale"
  low, high = float(np.min(x)), float(np.max(x))
  seen = f"their values span [{low:.3g}, {high:.3g}]"
  if low >= 0 and high <= 1:
    return 1, seen
  if low >= 0 and high <= 255:
    return 255, seen
  raise DistillError(f"temperature='choose' corrupts images with pixels in [0, 1] or "
                     f"[0, 255]; these span [{low:.3g}, {high:.3g}]: set a number, e.g. "
                     "temperature=1.")


def proxy_rows(n_train, validation_fraction, seed):
  """The training rows of the proxy: up to `PROXY_ROWS` of the job's early-stopping rows,
  the rows `scripts/image_choose_inputs.py` scores (`image_choice.proxy_test_rows`)."""
  return image_choice.proxy_test_rows(n_train, validation_fraction, seed, PROXY_ROWS)


def proxy_images(x, pixel_scale, seed):
  """(proxy OOD images, pixel scale, how it was read): each image of x under every
  `image_choice.PROXY_CORRUPTIONS` at severity 5, in the images' own pixel scale.

  Args:
    x: images [n, h, w, c] (the `proxy_rows`).
    pixel_scale: the job's `DataSource.pixel_scale` (None: read from the values, 1 for
      [0, 1], 255 for [0, 255]; other ranges are refused).
    seed: int.
  """
  scale, how = _pixel_scale(x, pixel_scale)
  unit = np.clip(np.asarray(x, np.float32) / np.float32(scale), 0.0, 1.0)
  corrupted, _ = image_choice.corruption_proxy(unit, seed=seed)
  return (corrupted * np.float32(scale)).astype(np.float32), scale, how


def ensemble_view(teacher, family, z_in, x_out):
  """The ensemble on the proxy: {"in": decomposition on the validation rows (from their
  outputs z_in), "out": on the corrupted images}."""
  z_out = np.asarray(teacher.predict_targets(x_out))
  if not np.all(np.isfinite(z_out)):
    raise DistillError("The teacher gives NaN/Inf on corrupted validation images "
                       "(temperature='choose'); set a number.")
  return {k: {name: np.asarray(v) for name, v in
              uncertainty_lib.decompose_ensemble(z, family).items()}
          for k, z in (("in", z_in), ("out", z_out))}


def score_student(student, family, ensemble, x_in, x_out, y_in=None):
  """One candidate on the proxy (`input_choice.proxy_score`) with "nll_gap": the
  student's NLL minus the ensemble's on the validation rows, against their labels, or
  (no labels) the ensemble's mean prediction as soft labels (then the gap is their KL
  divergence)."""
  s_in = predict_lib.predict_uncertainty(student, family, x_in)
  s_out = predict_lib.predict_uncertainty(student, family, x_out)
  score = input_choice.proxy_score(ensemble["in"]["epistemic"], ensemble["out"]["epistemic"],
                                   np.asarray(s_in["epistemic"]),
                                   np.asarray(s_out["epistemic"]))
  score["nll_gap"] = nll_gap(s_in["prediction"], ensemble["in"]["prediction"], y_in)
  return score


def nll_gap(p_student, p_ensemble, y=None):
  """The student's mean NLL minus the ensemble's (probabilities [n, classes]) against
  labels y [n]; with y None, against the ensemble's predictions as soft labels:
  mean_i sum_k p_ens log(p_ens / p_student), their KL divergence (>= 0)."""
  p_student = np.asarray(p_student, np.float64)
  p_ensemble = np.asarray(p_ensemble, np.float64)
  if y is not None:
    return float(metrics_lib.categorical_nll(y, p_student)
                 - metrics_lib.categorical_nll(y, p_ensemble))
  log_ratio = (np.log(np.maximum(p_ensemble, 1e-12))
               - np.log(np.maximum(p_student, 1e-12)))
  return float(np.mean(np.sum(p_ensemble * log_ratio, axis=-1)))


def choose(scores, default):
  """The kept temperature among {temperature: score} by `RULE`: among the candidates
  `input_choice.admissible` (NLL within 0.02 nats of the default's), the highest proxy
  AUROC gap; the default unless another's is more than `AUROC_TIE` above it.

  Args:
    scores: {temperature: `score_student` dict}; `default` among them.
    default: the job's default temperature (the NLL guard's reference).
  """
  keyed = {f"{t:g}": s for t, s in scores.items()}
  near = input_choice.admissible(keyed, base=f"{default:g}")
  best = max(near, key=lambda k: keyed[k]["auroc_gap"])
  if keyed[best]["auroc_gap"] - keyed[f"{default:g}"]["auroc_gap"] <= AUROC_TIE:
    best = f"{default:g}"
  return next(t for t in scores if f"{t:g}" == best)
