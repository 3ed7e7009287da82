"""Configuration: settings from the environment, and the default YAML files beside this module."""

from config.settings import Settings, SettingsError, load_settings

__all__ = ["Settings", "SettingsError", "load_settings"]
