"""Independent references of the ops, in plain PyTorch (dense, as mmdetection or torchvision compute them),
shared by the tests and the benchmarks: ``tests/reference/<op>.py`` for ``tinyfast.ops.<op>``."""
