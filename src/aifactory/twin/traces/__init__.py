"""Workload traces: our own format, and converters from Philly, openb and the live event log."""
