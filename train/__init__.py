"""Training: data loading, augmentation, backbones, two-stage transfer learning and evaluation (TensorFlow)."""
