"""Keras layers: spectral front ends, augmentation, mixup, classification heads
and scoring."""

from asd_keras.layers.augment import FrequencyMasking
from asd_keras.layers.augment import PitchShift
from asd_keras.layers.augment import TimeMasking
from asd_keras.layers.augment import TimeStretch
from asd_keras.layers.augment import WhiteNoise
from asd_keras.layers.conformer import ConformerBlock
from asd_keras.layers.conformer import RelativePositionAttention
from asd_keras.layers.conformer import TwoStageConformer
from asd_keras.layers.heads import AdaCos
from asd_keras.layers.heads import ArcFace
from asd_keras.layers.heads import CompactnessHead
from asd_keras.layers.heads import SoftmaxHead
from asd_keras.layers.heads import SubClusterAdaCos
from asd_keras.layers.mixup import Mixup
from asd_keras.layers.separation import MaskedRefinement
from asd_keras.layers.separation import RMSScaling
from asd_keras.layers.separation import SeparatorISTFT
from asd_keras.layers.separation import SeparatorSTFT
from asd_keras.layers.spectral import ClipSpectrum
from asd_keras.layers.spectral import LinearSpectrogram
from asd_keras.layers.spectral import TemporalMeanNormalization
from asd_keras.layers.statistics import LogMelSpectrogram
from asd_keras.layers.statistics import LogMelStatistics
from asd_keras.layers.statistics import LogMelVectors
from asd_keras.layers.reconstruction import FeatureMean
from asd_keras.layers.reconstruction import FrameReconstruction
from asd_keras.layers.mahalanobis import MahalanobisDistance
from asd_keras.layers.knn import NearestNeighbourDistance
from asd_keras.layers.knn import CosineReferenceScore
from asd_keras.layers.spectral import FixedLength
from asd_keras.layers.detectors import VectorScores
from asd_keras.layers.segments import MergeSegments
from asd_keras.layers.segments import PooledFeatureMaps
from asd_keras.layers.segments import SplitSegments
from asd_keras.layers.pooling import TemporalPooling
