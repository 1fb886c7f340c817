"""Mixed precision of the trained extractors: the `dtype_policy` key.

Every trained extractor takes `dtype_policy`, one of `DTYPE_POLICIES`:

- `"float32"` (default): everything in float32, as before the key existed;
- `"mixed_bfloat16"`: layers compute in bfloat16 and keep float32
  variables (Keras' mixed policy); no loss scaling is needed, bfloat16 has
  float32's exponent range;
- `"mixed_float16"`: layers compute in float16 with float32 variables; the
  optimizers are wrapped in `keras.optimizers.LossScaleOptimizer` (dynamic
  loss scaling), since small float16 gradients underflow. Meant for GPUs;
  a CPU trains it too, but slower than float32.

The extractor builds its networks inside `dtype_policy_scope`, which sets
Keras' global policy for the layers created within and restores the
previous one afterwards, so no other model of the process (the next
ensemble member, a backend, the exported scorer) inherits it. Each layer
records its policy in its config, so a saved model is rebuilt with the same
policy when it is loaded. What must stay float32 whatever the policy:

- the waveform layers (mixup, augmentations, segmenting), the front ends
  (STFT, log-mel, filter banks), the normalisation statistics and the
  angular-margin heads pin themselves to float32 (`asd_keras.layers.
  precision.Float32Layer`) and autocast their 16-bit inputs;
- the networks end in float32 (`float32_output`), so the losses, the
  embeddings, the reconstruction residuals and the exported SavedModel's
  `anomaly_score` are float32; Keras losses compute in float32 anyway.
"""

import contextlib

import keras
import tensorflow as tf

from asd_keras.config import choice

DTYPE_POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")


def precision_schema():
    """Validation rules of the compile keys every trained extractor takes:
    `jit_compile` and `dtype_policy`.

    Returns:
        dict key -> `asd_keras.config.Option`, to merge into a schema.
    """
    return {"jit_compile": choice(*JIT_CHOICES),
            "dtype_policy": choice(*DTYPE_POLICIES)}


@contextlib.contextmanager
def dtype_policy_scope(policy):
    """Layers created inside take `policy` unless they are given a dtype.

    Keras' global dtype policy is per thread; it is restored on exit, even
    after an error, so it never leaks into models built later.

    Args:
        policy: str (one of `DTYPE_POLICIES`) or `keras.DTypePolicy`.
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def loss_scaled(optimizer, policy):
    """`optimizer`, wrapped in a `LossScaleOptimizer` under `mixed_float16`.

    `Model.compile` wraps the optimizer itself when the model's policy is
    `mixed_float16` (Keras 3, `auto_scale_loss=True`); a custom `train_step`
    with a second optimizer (the GANs' discriminator) needs it done here, and
    doing it for every optimizer keeps one rule for all extractors (an
    optimizer that is already a `LossScaleOptimizer` is not wrapped again).

    Args:
        optimizer: `keras.optimizers.Optimizer`.
        policy: str or `keras.DTypePolicy`.
    """
    name = policy if isinstance(policy, str) else policy.name
    if name != "mixed_float16" or isinstance(optimizer,
                                             keras.optimizers.LossScaleOptimizer):
        return optimizer
    return keras.optimizers.LossScaleOptimizer(optimizer)


def float32_output(x, name):
    """Ends a network in float32: `x` through a float32 linear activation.

    The last layers of a mixed-precision network compute in bfloat16 or
    float16; the losses, embeddings and scores downstream want float32 (the
    Keras mixed-precision guide ends a model with `Activation("linear",
    dtype="float32")`). A float32 tensor is returned unchanged, so float32
    models (and the runs saved before the key existed) keep their layers.

    Args:
        x: Keras tensor, or a dict/list of them (each is cast).
        name: str. Layer name (a dict's keys are appended).

    Returns:
        The same structure of float32 Keras tensors.
    """
    if isinstance(x, dict):
        return {k: float32_output(v, f"{name}_{k}") for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(float32_output(v, f"{name}_{i}") for i, v in enumerate(x))
    if keras.backend.standardize_dtype(x.dtype) == "float32":
        return x
    return keras.layers.Activation("linear", dtype="float32", name=name)(x)


JIT_CHOICES = ("auto", True, False)


def resolve_jit_compile(value):
    """The `jit_compile` argument of `Model.compile` for a `jit_compile` key.

    `"auto"` compiles the training step with XLA only when TensorFlow sees a
    GPU. On 2 AVX2 cores (oneDNN on) the Wilkinghoff CNN trained at 21
    clips/s with XLA against 43 without, and with XLA the dense autoencoder's
    first epoch took 16 s per machine type, so the 20-epoch demo trained
    in 3 min 41 s against 2 min 48 s without (benchmarks/bench_dense_ae.py
    prints both ways), while Keras' own "auto" turns XLA on wherever a model
    allows it. `True`/`False` force it.
    """
    if value != "auto":
        return bool(value)
    return bool(tf.config.list_physical_devices("GPU"))
