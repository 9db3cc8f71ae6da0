"""A-SelecT Workbench core: datasets, noise schedule, DiT, timestep policies and the trainer.

Knows nothing of `analysis` or `app`.
"""
