"""Training loops of the tasks (genre models; the title generator)."""
