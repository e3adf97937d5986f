"""Generated protobuf code; only adapters import it."""
