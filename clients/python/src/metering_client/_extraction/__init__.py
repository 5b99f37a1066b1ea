"""The service's usage extraction (metering/domain), vendored. Never edit: run scripts/gen."""
