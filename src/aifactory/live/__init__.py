"""The live shell: wall clock, asyncio, real processes, a store, the HTTP API.

`FactoryService` (live.service) drives the pure core; executors run the jobs;
the store keeps their records and the append-only event log.
"""
