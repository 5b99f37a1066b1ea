"""metering: exact usage metering, pricing and ledgers for LLM API relays."""

__version__ = "0.1.0"
