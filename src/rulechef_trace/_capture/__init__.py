"""Capture: rulechef -> events (install/uninstall, run state, the wrapper factory)."""
