"""Files and the outside world: atomic writes, downloads (manifest, Drive/HTTP, checksums, VOC tars)."""
