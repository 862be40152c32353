"""Hydra config groups shipped with jaxrl (installed as `jaxrl.configs`)."""
