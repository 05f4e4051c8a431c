"""Protocols on shares: arithmetic, comparison, and approximations of non-linear functions."""
