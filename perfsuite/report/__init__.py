"""Reports, rendered from run records only: terminal, JUnit properties, Markdown."""
