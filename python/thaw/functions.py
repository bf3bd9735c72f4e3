"""Modal's `modal.functions` module: the function objects and what their
methods return."""
from ._functions import Function, FunctionCall
from ._stats import FunctionStats

# Modal's older module-level name for FunctionCall.gather.
gather = FunctionCall.gather

__all__ = ["Function", "FunctionCall", "FunctionStats", "gather"]
