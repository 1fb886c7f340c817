"""Losses: pure functions plus thin `keras.losses.Loss` classes."""

from asd_keras.losses.angular import CompactnessCrossEntropy
from asd_keras.losses.angular import CompactnessLoss
from asd_keras.losses.angular import MixupCrossEntropy
from asd_keras.losses.angular import compactness_crossentropy_loss
from asd_keras.losses.angular import compactness_loss
from asd_keras.losses.angular import mixup_categorical_crossentropy
from asd_keras.losses.contrastive import NTXent
from asd_keras.losses.contrastive import SimSiamLoss
from asd_keras.losses.contrastive import negative_cosine_similarity
from asd_keras.losses.contrastive import nt_xent
from asd_keras.losses.contrastive import simsiam_loss
from asd_keras.losses.separation import NegativeSISDR
from asd_keras.losses.separation import negative_si_sdr
from asd_keras.losses.separation import si_sdr
