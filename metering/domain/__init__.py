"""The domain core: money, usage, prices and ledger rules.

Imports nothing but the standard library and itself, so that the rules can be
tested without a database or a network and reused by every adapter.
"""
