"""Examples of user code plugged into the benchmark."""
