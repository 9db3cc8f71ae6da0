"""Analyses of trained DiTs across timesteps and layers: features, probes, MI, HFR, selection."""
