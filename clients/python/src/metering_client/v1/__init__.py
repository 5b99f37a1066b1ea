"""Generated protobuf and gRPC stubs of metering.v1. Never edit: run scripts/gen."""
