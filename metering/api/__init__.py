"""The gRPC layer: servicers, message conversion, the one error mapper, the server."""
