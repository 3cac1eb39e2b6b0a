"""The digital twin: the floor's own Factory on a virtual clock, fed by traces.

`replay(scenario, settings)` drives the very same core (`Factory`, policies,
placement) as the live shell; only the clock (`Kernel`) and the executor
(`SimExecutor`) are simulated.
"""
