"""Distillation losses: pure functions of tensors, with thin Keras `Loss` wrappers.

Targets `z` are the ensemble members' parameters, batch-first: [batch, members, params].
Inside `keras.Model.fit` the targets may also come as a dict
`{"ensemble": z, "label": y}` (see `td.teacher_targets`), in which case the optional
labelled term of eq 19-20 of [1] is added.

#### References

Classification (members of `families.CategoricalLogits` give logits):
- `EnsembleNLL(family)`: a Gaussian over the members' logits (centred on the reference
  class when the family has one), eq 7 and 9 of [1];
- `DirichletNLL`: EnD^2 [2], a Dirichlet over the members' (heated, smoothed) probability
  vectors, or the proxy-Dirichlet target of [3];
- `MixtureKL(family)` and `KnowledgeDistillation`: soft-target distillation of the
  ensemble's mean probabilities (Hinton et al. 2015; eq 5 and 23 of [1]); with a
  BatchEnsemble student ([batch, E, K] logits) member i learns from teacher i
  (`member_kl`, `member_cross_entropy`; the students of [4]).

[1]: Lindqvist, Olmin, Lindsten, Svensson. A general framework for ensemble distribution
     distillation. 2020. arXiv:2002.11531.

[2]: Malinin, Mlodozeniec, Gales. Ensemble Distribution Distillation. ICLR 2020.
     arXiv:1905.00076.

[3]: Ryabinin, Malinin, Gales. Scaling Ensemble Distribution Distillation to Many Classes
     with Proxy Targets. NeurIPS 2021. arXiv:2105.06987.

[4]: Nam, Yoon, Lee, Lee. Diversity Matters When Learning From Ensembles. NeurIPS 2021.
     arXiv:2110.14149.

Modules, by family (every name is importable from `td.losses`):

* `regression`: the general framework's NLL of the members' parameters
  (`ensemble_nll`, `predictive_log_prob`, `EnsembleNLL`), for regression and for
  Normals over logits;
* `dirichlet`: EnD^2 and the proxy-Dirichlet target (`dirichlet_nll`,
  `proxy_dirichlet_*`, `DirichletNLL`);
* `distillation`: mixture and knowledge distillation (`mixture_cross_entropy`,
  `soft_target_kl`, `member_kl`, `member_cross_entropy`, `predictive_kl`, `MixtureKL`,
  `KnowledgeDistillation`);
* `_checks` (private): the target checks shared by all (`check_targets`,
  `unpack_targets`).
"""

from tfp_distill.losses._checks import check_targets
from tfp_distill.losses._checks import unpack_targets
from tfp_distill.losses.dirichlet import DirichletNLL
from tfp_distill.losses.dirichlet import dirichlet_nll
from tfp_distill.losses.dirichlet import proxy_dirichlet_cost
from tfp_distill.losses.dirichlet import proxy_dirichlet_kl
from tfp_distill.losses.dirichlet import proxy_dirichlet_target
from tfp_distill.losses.distillation import KnowledgeDistillation
from tfp_distill.losses.distillation import MixtureKL
from tfp_distill.losses.distillation import member_cross_entropy
from tfp_distill.losses.distillation import member_kl
from tfp_distill.losses.distillation import mixture_cross_entropy
from tfp_distill.losses.distillation import predictive_kl
from tfp_distill.losses.distillation import soft_target_kl
from tfp_distill.losses.regression import EnsembleNLL
from tfp_distill.losses.regression import ensemble_nll
from tfp_distill.losses.regression import predictive_log_prob

__all__ = [
    "ensemble_nll",
    "predictive_log_prob",
    "mixture_cross_entropy",
    "dirichlet_nll",
    "proxy_dirichlet_cost",
    "proxy_dirichlet_kl",
    "proxy_dirichlet_target",
    "soft_target_kl",
    "predictive_kl",
    "member_kl",
    "member_cross_entropy",
    "check_targets",
    "unpack_targets",
    "EnsembleNLL",
    "DirichletNLL",
    "MixtureKL",
    "KnowledgeDistillation",
]
