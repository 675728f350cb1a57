"""servesat: the cheapest way to serve an LLM, chosen by CP-SAT over a roofline cost model.

    from optimizer import optimize, evaluate, load_model, load_chips
"""

from optimizer.api import evaluate, optimize
from optimizer.catalog import Chip, Model, builtin_models, load_chips, load_model
from optimizer.errors import InputError
from optimizer.result import Configuration, Evaluation, OptimizeResult, SolveStats
from optimizer.workload import OBJECTIVES, Workload

__all__ = ["OBJECTIVES", "Chip", "Configuration", "Evaluation", "InputError", "Model",
           "OptimizeResult", "SolveStats", "Workload", "builtin_models", "evaluate",
           "load_chips", "load_model", "optimize"]
