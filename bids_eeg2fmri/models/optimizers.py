"""Adam with TensorFlow's fused update kernel.

Keras 3's Adam writes its update as about a dozen element-wise operations per variable, each
a full pass over the variable's memory. At noddi-tafp's size (44.7 million parameters, most
in the dense decoder) those passes took about a third of a CPU training step (TensorFlow's
profiler, benchmarks/NOTES.md). TensorFlow's ``ResourceApplyAdam`` kernel does the same update
in one pass. The formula is Keras's (Kingma & Ba 2015, epsilon outside the square root)::

    m <- beta_1 m + (1 - beta_1) g,   v <- beta_2 v + (1 - beta_2) g^2
    w <- w - lr sqrt(1 - beta_2^t) / (1 - beta_1^t) m / (sqrt(v) + epsilon)

so results agree with ``keras.optimizers.Adam`` up to floating-point rounding.
"""

from __future__ import annotations

import keras

from bids_eeg2fmri.models.layers import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class FusedAdam(keras.optimizers.Adam):
    """``keras.optimizers.Adam`` whose per-variable update is one fused TensorFlow kernel.

    Falls back to Keras's update (same result) on another backend, with ``amsgrad``, for
    sparse gradients, and under a multi-replica distribution strategy.
    """

    def update_step(self, gradient, variable, learning_rate):
        if not self._fusable(gradient):
            return super().update_step(gradient, variable, learning_rate)
        import tensorflow as tf

        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        index = self._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle,
            m=self._momentums[index].handle,
            v=self._velocities[index].handle,
            beta1_power=tf.pow(beta_1, step),
            beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype),
            beta1=beta_1,
            beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype),
        )
        return None

    def _fusable(self, gradient) -> bool:
        if keras.backend.backend() != "tensorflow" or self.amsgrad:
            return False
        import tensorflow as tf

        if isinstance(gradient, tf.IndexedSlices):
            return False
        strategy = getattr(self, "_distribution_strategy", None) or tf.distribute.get_strategy()
        return strategy.num_replicas_in_sync == 1  # the strategy the optimizer was built in
