"""Generated gRPC stubs for metering.v1. Never edit: run scripts/gen-proto."""
