"""The planner: hardware catalogue, training and inference cost, energy, carbon and scaling laws.

Pure arithmetic over frozen dataclasses; the CLI (`aifactory plan`) parses and prints. See docs/plan.md.
"""
