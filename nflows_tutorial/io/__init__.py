"""Bytes on disk and over the wire: paths, atomic files, downloads, MNIST and checkpoints."""
