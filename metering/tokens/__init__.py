"""Token counting: tiktoken over vendored vocabularies, and approximations."""
