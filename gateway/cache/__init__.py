"""The response cache: content-addressed bodies, their index, and in-flight coalescing."""
