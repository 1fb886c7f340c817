"""The Keras networks of the system families (functional models and their
builders); the extractors in `asd_keras.extractors` train and serve them.

Importing it registers `BEATsBackbone` and `EATBackbone` with Keras, so that
`keras_hub.models.Backbone.from_preset(folder)` finds them."""

from asd_keras.models.beats_backbone import BEATsBackbone
from asd_keras.models.dense_ae import dense_autoencoder
from asd_keras.models.eat_backbone import EATBackbone
from asd_keras.models.gan import EGBAD
from asd_keras.models.gan import GANomaly
from asd_keras.models.gan import SkipGANomaly
from asd_keras.models.resnet import RESNET_DEPTHS
from asd_keras.models.resnet import resnet_backbone
from asd_keras.models.resnet import resnet_feature_dim
from asd_keras.models.separator import build_separator
from asd_keras.models.separator import separator_feature_model
from asd_keras.models.wilkinghoff import wilkinghoff_embedding_model
