"""Tasks: turn a task spec into tensors of token ids and targets."""
