"""Images and boxes: the VOC reader, labels, transforms, and the synthetic VOC-format data set."""
