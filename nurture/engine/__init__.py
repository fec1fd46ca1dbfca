"""The runtime, who belongs in which journey, the step executor, the one send path, the tick."""
