"""The C kernel: the cffi binding and the engine that drives it."""
