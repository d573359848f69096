"""A run's configuration, torch-free: the options table, Config, the recipe's rules and the
ranges every number must lie in. A leaf: it imports nothing of cl but errors.py."""
from centerloss.config.config import CONFIG_DEFAULTS, Config, default_of
from centerloss.config.options import OPTIONS, check, check_all, flag_of

__all__ = ["CONFIG_DEFAULTS", "OPTIONS", "Config", "check", "check_all", "default_of", "flag_of"]
