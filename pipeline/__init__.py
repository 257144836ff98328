"""igaudit, the application: the CLI, config, pre-flight checks, runner options, the graph, the run directory, report, audit and demo."""
