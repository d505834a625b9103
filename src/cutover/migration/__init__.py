"""Nova's role: a migration as small do/undo steps, strategies as their compositions."""
