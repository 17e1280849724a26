"""Keras 3 backbones: `td.models.mlp`, `small_cnn` and `resnet18_cifar` built with Keras 3.

The same architectures, layer for layer (the functions are `td.models`' with
`keras_version=3`): a Keras 3 student of the architecture of a tf_keras one, for
comparing the two, is `td.keras3.models.small_cnn(..., head=td.keras3.heads.DirichletHead(
K))` where the tf_keras one is `td.models.small_cnn(..., head=td.heads.DirichletHead(K))`
(and so for `mlp`, `resnet18_cifar` and the other heads). Seeded initial weights differ
between the two Keras (their initializers draw differently).

```python
Head = td.keras3.heads.DirichletHead
student = td.keras3.models.small_cnn(output_size=Head.params_size(10), head=Head(10),
                                     seed=0)
members = [td.keras3.models.small_cnn(seed=s) for s in range(5)]     # logits [batch, 10]
```
"""

from tfp_distill import _keras3
from tfp_distill import models as models_lib

_keras3.tensorflow_module("td.keras3")

__all__ = ["mlp", "resnet18_cifar", "small_cnn"]


def mlp(input_shape, hidden_units, output_size, head=None, **kwargs):
  """`td.models.mlp` in Keras 3 (the arguments are its own)."""
  return models_lib.mlp(input_shape, hidden_units, output_size, head=head, keras_version=3,
                        **kwargs)


def small_cnn(input_shape=(28, 28, 1), output_size=10, head=None, **kwargs):
  """`td.models.small_cnn` in Keras 3 (the arguments are its own)."""
  return models_lib.small_cnn(input_shape, output_size, head=head, keras_version=3,
                              **kwargs)


def resnet18_cifar(input_shape=(32, 32, 3), output_size=10, head=None, **kwargs):
  """`td.models.resnet18_cifar` in Keras 3 (the arguments are its own)."""
  return models_lib.resnet18_cifar(input_shape, output_size, head=head, keras_version=3,
                                   **kwargs)
