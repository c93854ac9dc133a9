"""Development tools: mkdocs hooks and the child-process helper (`tools.processes`)."""
