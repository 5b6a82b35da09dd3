"""What a model is worth: VOC evaluation, exact MACs/params, latency, inference options, sensitivity scans."""
