"""Pure, unit-tested maths of every method: losses, estimators, advantages. No Lightning, no config objects."""

IGNORE_INDEX = -100  # the label of a position no loss reads (PyTorch's cross_entropy default ignore_index)
