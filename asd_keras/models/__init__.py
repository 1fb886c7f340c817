"""The Keras networks of the system families (functional models and their
builders); the extractors in `asd_keras.extractors` train and serve them.

`BEATsBackbone` and `EATBackbone` are imported on first use (keras-hub takes
about 2 s to import): `from asd_keras.models import BEATsBackbone, EATBackbone`
registers them with Keras, so that
`keras_hub.models.Backbone.from_preset(folder)` finds them."""

import importlib

from asd_keras.models.dense_ae import dense_autoencoder
from asd_keras.models.gan import EGBAD
from asd_keras.models.gan import GANomaly
from asd_keras.models.gan import SkipGANomaly
from asd_keras.models.resnet import RESNET_DEPTHS
from asd_keras.models.resnet import resnet_backbone
from asd_keras.models.resnet import resnet_feature_dim
from asd_keras.models.separator import build_separator
from asd_keras.models.separator import separator_feature_model
from asd_keras.models.wilkinghoff import wilkinghoff_embedding_model

_BACKBONES = {"BEATsBackbone": "asd_keras.models.beats_backbone",
              "EATBackbone": "asd_keras.models.eat_backbone"}


def __getattr__(name):
    """`BEATsBackbone` and `EATBackbone`, imported with keras-hub on first use."""
    if name in _BACKBONES:
        return getattr(importlib.import_module(_BACKBONES[name]), name)
    raise AttributeError(f"module 'asd_keras.models' has no attribute {name!r}")
