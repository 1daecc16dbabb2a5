"""Pure NumPy layer math: ``*_forward(...) -> (y, cache)`` and ``*_backward(dy, cache)``.

No state lives here; :mod:`cnnlab.nn` wraps these functions in Modules.
"""

__all__: list[str] = []
