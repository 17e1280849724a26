"""The one place that imports Keras.

TensorFlow Probability's layers work only with the Keras 2 API, which lives in the
``tf_keras`` package; ``tf.keras`` is Keras 3 on TensorFlow >= 2.16. Every module of
tfp_distill imports Keras from here and never writes ``tf.keras``.

This module never sets ``TF_USE_LEGACY_KERAS``: TFP decides which Keras to use by asking
``tf.keras.version()`` when it is first imported, and setting the variable after TensorFlow
is imported breaks that import. Importing ``tf_keras`` explicitly works whether or not the
user set the variable before importing TensorFlow.
"""

import tf_keras as keras

__all__ = ["keras"]
