"""hrank-ssd: HRank filter pruning for SSD detectors (VGG16-SSD, MobileNetV1-SSD) on PASCAL VOC."""

__version__ = "0.1.0"
