"""Runtime: windows and batches (plan -> run -> regroup), device and dtype policy."""
