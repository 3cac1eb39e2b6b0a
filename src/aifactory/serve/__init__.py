"""Serving: HTTP predictions with dynamic batching, hot swap, shadow mode, and the prediction/feedback log.

Modules: `wire` (API types), `batching`, `swap`, `shadow`, `feedback` (FeedbackLog for the
line's flywheel), `guard` (auth, body limit), `server` (app, runner, `python -m` entry).
"""
