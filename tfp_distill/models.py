"""Backbones for members and students (Keras functional models)."""

from tfp_distill._keras import keras

__all__ = ["mlp"]


def mlp(input_shape, hidden_units, output_size, head=None, activation="relu", seed=None,
        name=None):
  """A multilayer perceptron x -> params [batch, output_size] (-> head(params)).

  Args:
    input_shape: tuple, shape of one x (e.g. (1,) or (features,)).
    hidden_units: sequence of ints, widths of the hidden layers.
    output_size: int, size of the last Dense layer (a family's or head's params_size).
    head: None, or a Keras layer applied to the params (a distribution head).
    activation: str, hidden activation.
    seed: int or None, seeds the Glorot initializers (layer i uses seed + i).
    name: model name.

  Returns:
    keras.Model.
  """
  def init(i):
    return keras.initializers.GlorotUniform(seed=None if seed is None else seed + i)

  inputs = keras.Input(shape=tuple(input_shape))
  h = inputs
  for i, units in enumerate(hidden_units):
    h = keras.layers.Dense(units, activation=activation, kernel_initializer=init(i))(h)
  out = keras.layers.Dense(output_size, kernel_initializer=init(len(hidden_units)))(h)
  if head is not None:
    out = head(out)
  return keras.Model(inputs, out, name=name)
