"""The service layer: one handler per use case; owns transactions; no gRPC."""
