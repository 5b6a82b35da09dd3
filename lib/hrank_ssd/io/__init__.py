"""Files and the outside world: atomic writes, downloads (manifest, Drive/HTTP, checksums, VOC tars) and the stand-in server that rehearses them on 127.0.0.1."""
