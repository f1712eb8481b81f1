"""Protection: providers, checkpoints, the resource graph, flows and protection plugins."""
