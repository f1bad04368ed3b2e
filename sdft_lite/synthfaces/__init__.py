"""SynthFaces: the package's own face dataset, a stand-in for FFHQ → MetFaces with exact attribute labels.

    images, labels = render(16, style="portrait", size=64, seed=0)        # uint8 [16, 64, 64, 3], FaceLabels
    write_domain(DomainSpec.limited_target(), "data/limited32", size=32)   # PNGs + labels.csv + manifest.json
    classifier, report = train_classifier(size=32)                          # five heads, held-out accuracy
    realism, report = train_realism(size=32)                                # validated realism features
    clip, report = train_synthclip(SynthClipConfig.quick(), "cpu")          # an image–text model (SynthCLIP)

Modules: attributes (names, levels, labels), shapes + render (the drawing), styles (photo / portrait),
degrade (blur, noise, ...), domains (source / limited / full), classifier, realism, captions + synthclip, preview.
"""
from .attributes import ATTRIBUTES, FACE_ATTRIBUTES, NUM_LEVELS, FaceLabels
from .classifier import AttributeClassifier, ClassifierConfig, load_classifier, save_classifier, train_classifier
from .domains import DomainSpec, FaceDataset, read_domain, read_labels, write_domain
from .preview import save_preview
from .realism import (RealismConfig, RealismNet, load_feature_extractor, load_realism,
                      make_feature_extractor, realism_distance, save_realism, train_realism,
                      validate_realism)
from .renderer import render, to_tensor, to_uint8
from .synthclip import (SYNTHCLIP_TEMPLATES, SynthClip, SynthClipConfig, load_synthclip, save_synthclip,
                        smile_direction_check, train_synthclip, zero_shot_accuracy)

__all__ = [
    "ATTRIBUTES", "FACE_ATTRIBUTES", "NUM_LEVELS", "FaceLabels", "AttributeClassifier", "ClassifierConfig",
    "load_classifier", "save_classifier", "train_classifier", "DomainSpec", "FaceDataset", "read_domain",
    "read_labels", "write_domain", "save_preview", "RealismConfig", "RealismNet",
    "load_feature_extractor", "load_realism", "make_feature_extractor", "realism_distance",
    "save_realism", "train_realism", "validate_realism", "render", "to_tensor", "to_uint8",
    "SYNTHCLIP_TEMPLATES", "SynthClip", "SynthClipConfig", "load_synthclip", "save_synthclip",
    "smile_direction_check", "train_synthclip", "zero_shot_accuracy",
]
