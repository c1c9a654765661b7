"""Model-zoo test support: stripped exports (assets.py) and the two-mode check (check.py)."""
