"""Timestep-selection policies: which diffusion timesteps training spends its steps on.

`make_policy(name, num_timesteps=T, seed=..., schedule=..., **params)` builds one from the registry `POLICIES`.
Every module of this package registers its policies on import (`@register_policy`); the loop below imports
them all, so a new policy file (e.g. `learned.py`) plugs in without editing this one.
"""
import importlib
import pkgutil

from aselect_core.policies.base import (POLICIES, Feedback, TimestepPolicy, effective_timesteps, make_policy,
                                        register_policy)
from aselect_core.policies.continuous import LogitNormalPolicy, LogNormalPolicy
from aselect_core.policies.loss_aware import LossAwarePolicy
from aselect_core.policies.uniform import FixedPolicy, UniformPolicy, UniformSubsetPolicy

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["POLICIES", "Feedback", "TimestepPolicy", "effective_timesteps", "make_policy", "register_policy",
           "FixedPolicy", "LogitNormalPolicy", "LogNormalPolicy", "LossAwarePolicy", "UniformPolicy",
           "UniformSubsetPolicy"]
