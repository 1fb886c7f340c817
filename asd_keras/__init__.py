"""asd-keras: machine-sound anomaly detection (DCASE Task 2) in Keras 3.

The public API is organised by concept: `asd_keras.data` (layouts, audio,
pipelines, synthetic data, download, class labels), `asd_keras.features`,
`asd_keras.layers`, `asd_keras.losses`, `asd_keras.models`,
`asd_keras.scoring`, `asd_keras.evaluation`, `asd_keras.visualisation` and
the command-line program in `asd_keras.cli`. Importing this package has no side
effects and does not import TensorFlow.
"""

__version__ = "0.1.0"
